import textwrap

import pytest

from shipyard.errors import ConfigError
from shipyard.project import load_project, parse_project
from shipyard.train import (CategoricalParam, FloatParam, IntParam, ProjectSpec,
                            validate_estimator)

VALID = """\
dataset: adult@3
target: income
task: binary
features:
  drop: [fnlwgt]
  sensitive: [sex, race]
seed: 42
train:
  split: {test_size: 0.2, validation_size: 0.1}
  imbalance: class_weight
  search: {kind: tpe, n_trials: 30, pruner: median}
  candidates:
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {max_iter: 500}
      search_space:
        C: {type: float, low: 0.001, high: 100, log: true}
    - name: forest
      estimator: sklearn.ensemble.RandomForestClassifier
      search_space:
        n_estimators: {type: int, low: 50, high: 300, step: 50}
        max_depth: {type: categorical, choices: [null, 4, 8]}
        max_features: {type: categorical, choices: [sqrt, log2]}
        min_samples_leaf: {type: int, low: 1, high: 20, log: true, when: {max_features: sqrt}}
    - name: gbm
      estimator: lightgbm
    - name: mlp
      estimator: torch_mlp
      search_space:
        hidden_sizes: {type: categorical, choices: [[64], [64, 32]]}
        lr: {type: float, low: 0.0001, high: 0.1, log: true}
"""


def write(tmp_path, text, name="shipyard.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(text, tmp_path=None, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        parse_project(textwrap.dedent(text), source="shipyard.yaml", **kwargs)
    return str(info.value)


def replace(old, new, text=VALID):
    assert old in text, old
    return text.replace(old, new, 1)


# ------------------------------------------------------------- happy path
def test_loads_a_full_project(tmp_path):
    spec = load_project(write(tmp_path, VALID))
    assert isinstance(spec, ProjectSpec)
    assert spec.dataset.name == "adult" and spec.dataset.version == 3
    assert spec.dataset.ref == "adult@3"
    assert spec.task == "binary" and spec.seed == 42
    assert [c.name for c in spec.train.candidates] == ["logreg", "forest", "gbm", "mlp"]
    space = spec.train.candidates[1].search_space
    assert isinstance(space["n_estimators"], IntParam) and space["n_estimators"].step == 50
    assert isinstance(space["max_depth"], CategoricalParam)
    assert space["max_depth"].choices == [None, 4, 8]
    assert space["min_samples_leaf"].when == {"max_features": "sqrt"}
    assert isinstance(spec.train.candidates[0].search_space["C"], FloatParam)
    assert spec.train.candidates[3].search_space["hidden_sizes"].choices == [[64], [64, 32]]


def test_defaults_follow_the_task(tmp_path):
    spec = load_project(write(tmp_path, VALID))
    assert spec.train.split.kind == "stratified"  # classification default
    assert (spec.metric, spec.direction) == ("roc_auc", "maximize")
    assert spec.train.search.executor == "local" and spec.train.train_on_sensitive is False
    reg = parse_project(VALID.replace("task: binary", "task: regression")
                        .replace("imbalance: class_weight", "imbalance: none")
                        .replace("LogisticRegression", "Ridge")
                        .replace("RandomForestClassifier", "RandomForestRegressor")
                        .replace("max_iter: 500", "fit_intercept: true")
                        .replace("C: {", "alpha: {"))
    assert reg.train.split.kind == "random"
    assert (reg.metric, reg.direction) == ("rmse", "minimize")


def test_dataset_forms(tmp_path):
    spec = parse_project(replace("dataset: adult@3", "dataset: adult"))
    assert spec.dataset.ref == "adult@latest"
    spec = load_project(write(tmp_path, replace("dataset: adult@3",
                                                "dataset: {source: data/adult.csv, name: adult}")))
    assert spec.dataset.source == str((tmp_path / "data" / "adult.csv").resolve())
    spec = parse_project(replace("dataset: adult@3", "dataset: {source: 's3://b/adult.csv'}"),
                         base_dir=tmp_path)
    assert spec.dataset.source == "s3://b/adult.csv" and spec.dataset.name is None


def test_training_features_leave_out_target_dropped_and_sensitive():
    spec = parse_project(VALID)
    columns = ["age", "sex", "race", "fnlwgt", "income", "education"]
    assert spec.training_features(columns) == ["age", "education"]
    spec = parse_project(replace("imbalance: class_weight",
                                 "imbalance: class_weight\n  train_on_sensitive: true"))
    assert spec.training_features(columns) == ["age", "sex", "race", "education"]


def test_training_features_name_a_missing_column():
    spec = parse_project(VALID)
    with pytest.raises(ConfigError, match=r"'fnlwgt'.*not in the dataset.*did you mean 'fnlwgtt'"):
        spec.training_features(["age", "sex", "race", "fnlwgtt", "income"])


# ------------------------------------------------------------ file & YAML
def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_project(tmp_path / "nope.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "dataset: adult@3\ntarget: [income\ntask: binary\n")
    with pytest.raises(ConfigError) as info:
        load_project(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)
    assert "invalid YAML" in str(info.value)


def test_duplicate_key_is_an_error():
    msg = error_of(VALID + "target: other\n")
    assert "line 32: target: this key appears twice" in msg


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(text):
    assert "expected a mapping of sections" in error_of(text)


# ------------------------------------------------- located, clear messages
def test_missing_key_names_the_key():
    msg = error_of(VALID.replace("target: income\n", ""))
    assert msg == "shipyard.yaml: target: this key is required"


def test_wrong_type_names_file_line_key_and_expectation():
    msg = error_of(replace("n_trials: 30", "n_trials: many"))
    assert msg.startswith("shipyard.yaml, line 11: train.search.n_trials:")
    assert "valid integer" in msg and "'many'" in msg


def test_key_path_reaches_into_search_space():
    msg = error_of(replace("low: 0.0001", "low: abc"))
    assert "line 31: train.candidates[3].search_space.lr.low:" in msg
    assert "valid number" in msg


def test_unknown_key_suggests_the_right_one():
    msg = error_of(replace("search:", "serch:"))
    assert "train.serch: unknown key 'serch'; did you mean 'search'?" in msg
    msg = error_of(replace("low: 0.001,", "lo: 0.001,"))
    assert "train.candidates[0].search_space.C.lo: unknown key 'lo'; did you mean 'low'?" in msg
    msg = error_of(VALID + "zzz: 1\n")
    assert "zzz: unknown key 'zzz' (expected one of: name, dataset" in msg


def test_several_problems_are_listed_together():
    msg = error_of(replace("seed: 42", "seed: -1").replace("test_size: 0.2", "test_size: 2"))
    assert msg.startswith("shipyard.yaml: 2 problems")
    assert "seed:" in msg and "train.split.test_size:" in msg


@pytest.mark.parametrize("old, new, expected", [
    ("task: binary", "task: clasification",
     "task: expected 'binary', 'multiclass' or 'regression', got 'clasification'"),
    ("high: 100", "high: 0.0001", "low (0.001) must be less than high (0.0001)"),
    ("low: 0.001", "low: 0", "log: true needs low > 0, got low: 0.0"),
    ("choices: [sqrt, log2]", "choices: []", "max_features.choices: list should have at least 1"),
    ("choices: [sqrt, log2]", "choices: [sqrt, sqrt]", "choice 'sqrt' is listed twice"),
    ("{max_features: sqrt}", "{max_feature: sqrt}",
     "refers to 'max_feature', which is not in the search space; did you mean 'max_features'?"),
    ("{max_features: sqrt}", "{max_features: auto}", "max_features can never be 'auto'"),
    ("{type: int, low: 50", "{type: integer, low: 50",
     "n_estimators: expected type: int, float or categorical, got 'integer'"),
    ("split: {", "split: {kind: group, ", "kind: group needs a group_column"),
    ("split: {", "split: {kind: time, ", "kind: time needs a time_column"),
    ("split: {", "split: {group_column: user, ", "group_column is only used with kind: group"),
    ("validation_size: 0.1", "validation_size: 0.8", "test_size + validation_size must be below 1"),
    ("split: {", "split: {folds: 1, ", "train.split.folds: input should be greater than or equal"),
    ("pruner: median", "pruner: asha", "expected 'none', 'median' or 'hyperband', got 'asha'"),
    ("pruner: median", "address: 'ray://h:10001'", "address is only used with executor: ray"),
    ("pruner: median", "metric: rmse", "'rmse' is not a binary metric"),
    ("pruner: median", "metric: roc_aux", "did you mean 'roc_auc'?"),
    ("pruner: median", "metric: log_loss, direction: maximize", "log_loss is to minimize"),
    ("kind: tpe", "kind: grid", "grid search needs a finite grid"),
    ("name: forest", "name: logreg", "candidate names must be unique; logreg repeats"),
    ("params: {max_iter: 500}", "params: {C: 1.0}", "C is both a fixed param and searched"),
    ("candidates:\n", "candidates: []\nx:\n", "train.candidates: list should have at least 1"),
    ("dataset: adult@3", "dataset: 'adult@three'", "expected 'name' or 'name@version'"),
    ("dataset: adult@3", "dataset: {name: adult, version: 0}", "versions start at 1"),
    ("sensitive: [sex, race]", "sensitive: [sex, income]",
     "the target 'income' cannot be in features.sensitive"),
    ("drop: [fnlwgt]", "drop: [fnlwgt]\n  use: [fnlwgt, age]", "fnlwgt is both in use and in drop"),
    ("seed: 42", "seed: 4.5", "seed: input should be a valid integer"),
])
def test_cross_field_rules(old, new, expected):
    assert expected in error_of(replace(old, new))


def test_conditions_may_not_form_a_cycle():
    text = replace("max_features: {type: categorical, choices: [sqrt, log2]}",
                   "max_features: {type: categorical, choices: [sqrt, log2], "
                   "when: {min_samples_leaf: 2}}")
    assert "conditions form a cycle" in error_of(text)


def test_task_specific_rules():
    reg = VALID.replace("task: binary", "task: regression")
    assert "imbalance: class_weight applies to classification" in error_of(reg)
    reg = reg.replace("imbalance: class_weight", "imbalance: none")
    assert "stratified needs a classification task" in error_of(
        replace("split: {", "split: {kind: stratified, ", reg))


# ------------------------------------------------------------- estimators
@pytest.mark.parametrize("path, expected", [
    ("os.system", "'os.system' is refused: estimators must come from sklearn, lightgbm, shipyard"),
    ("builtins.eval", "is refused"),
    ("subprocess.Popen", "is refused"),
    ("sklearn.__builtins__.eval", "is not an estimator import path"),
    ("sklearn.base.os.system", "cannot import 'sklearn.base.os'"),
    ("__import__('os').system", "is not an estimator import path"),
    ("sklearn.linear_model._base._preprocess_data", "names a private object"),
    ("sklearn.base.clone", "'sklearn.base.clone' is not a scikit-learn estimator class"),
    ("shipyard.store.ArtifactStore", "is not a scikit-learn estimator class"),
    ("sklearn.linear_model.LogisticRegresion",
     "did you mean 'LogisticRegression'"),
    ("sklearn.LogisticRegression", "did you mean 'sklearn.linear_model.LogisticRegression'"),
    ("sklearn.nosuchmodule.Thing", "cannot import 'sklearn.nosuchmodule'"),
    ("LogisticRegression", "is not an estimator import path"),
])
def test_validate_estimator_refuses_hostile_or_unknown_paths(path, expected):
    with pytest.raises(ConfigError) as info:
        validate_estimator(path)
    assert expected in str(info.value)


def test_validate_estimator_resolves_classes_and_aliases():
    from sklearn.ensemble import RandomForestRegressor

    from shipyard.train import TorchMLPClassifier, TorchMLPRegressor

    assert validate_estimator("sklearn.ensemble.RandomForestRegressor",
                              "regression") is RandomForestRegressor
    assert validate_estimator("torch_mlp", "binary") is TorchMLPClassifier
    assert validate_estimator("torch_mlp", "regression") is TorchMLPRegressor
    assert validate_estimator("shipyard.train.TorchMLPRegressor") is TorchMLPRegressor


def test_validate_estimator_checks_the_task_and_its_input():
    with pytest.raises(ConfigError, match="is not a classifier, which task binary needs"):
        validate_estimator("sklearn.linear_model.LinearRegression", "binary")
    with pytest.raises(ConfigError, match="unknown task 'ranking'"):
        validate_estimator("sklearn.linear_model.LinearRegression", "ranking")
    with pytest.raises(ConfigError, match="must be an import path string, got int"):
        validate_estimator(42)


def test_load_project_checks_estimators_and_their_params():
    msg = error_of(replace("estimator: sklearn.linear_model.LogisticRegression",
                           "estimator: os.system"))
    assert "line 14: train.candidates[0].estimator: 'os.system' is refused" in msg
    msg = error_of(replace("params: {max_iter: 500}", "params: {max_itr: 500}"))
    assert "train.candidates[0].params.max_itr: LogisticRegression has no parameter " \
           "'max_itr'; did you mean 'max_iter'?" in msg
    msg = error_of(replace("lr: {", "learning_rate: {"))
    assert "train.candidates[3].search_space.learning_rate: TorchMLPClassifier has no " \
           "parameter 'learning_rate'" in msg
    msg = error_of(replace("sklearn.ensemble.RandomForestClassifier",
                           "sklearn.ensemble.VotingClassifier"))
    assert "'sklearn.ensemble.VotingClassifier' cannot be saved safely" in msg
    assert "meta-estimators wrap estimators a project file cannot give" in msg
    msg = error_of(replace("sklearn.ensemble.RandomForestClassifier",
                           "sklearn.ensemble.RandomForestRegressor"))
    assert "'sklearn.ensemble.RandomForestRegressor' is not a classifier" in msg


def test_hostile_estimator_is_refused_even_without_resolving():
    msg = error_of(replace("estimator: sklearn.linear_model.LogisticRegression",
                           "estimator: os.system"), resolve_estimators=False)
    assert "'os.system' is refused" in msg
    spec = parse_project(replace("params: {max_iter: 500}", "params: {max_itr: 500}"),
                         resolve_estimators=False)
    assert spec.train.candidates[0].params == {"max_itr": 500}


@pytest.mark.parametrize("old, new, expected", [
    ("C: {type: float, low: 0.001, high: 100, log: true}", "C: 5",
     "train.candidates[0].search_space.C: expected a mapping (key: value), got an integer 5"),
    ("C: {type: float, ", "C: {",
     "search_space.C: a search-space parameter needs a type: int, float or categorical"),
    ("C: {type: float, low: 0.001,", "C: {type: float, choices: [1], low: 0.001,",
     "search_space.C.choices: unknown key 'choices' (expected one of: when, type, low, high"),
    ("choices: [sqrt, log2]", "choices: [sqrt, [1, [2]]]",
     "choice [1, [2]] must be a number, string, boolean, null or a list of those"),
    ("{max_features: sqrt}", "{max_features: [sqrt]}",
     "max_features must be compared with a number, string, boolean or null"),
    ("params: {max_iter: 500}", "params: [1]",
     "train.candidates[0].params: expected a mapping (key: value), got a list [1]"),
    ("drop: [fnlwgt]", "drop: fnlwgt", "features.drop: expected a list, got a string 'fnlwgt'"),
    ("  C: {", "  7: {", "train.candidates[0].search_space[7]: keys must be strings"),
])
def test_messages_say_what_was_expected(old, new, expected):
    assert expected in error_of(replace(old, new))


def test_settings_that_need_a_missing_package_say_which(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("imblearn", "ray") else real(name, *a))
    msg = error_of(replace("imbalance: class_weight", "imbalance: smote")
                   .replace("pruner: median", "executor: ray"))
    assert "train.imbalance: smote needs the imbalanced-learn package" in msg
    assert "train.search.executor: ray needs the ray package" in msg


def test_gates_section_is_validated_at_load_time(tmp_path):
    from shipyard.errors import ConfigError
    from shipyard.project import load_project

    base = """name: t
dataset: d@1
target: y
task: binary
train:
  candidates: [{name: lr, estimator: sklearn.linear_model.LogisticRegression}]
gates:
  metrics: {roc_auc: {%s: 0.8}}
  champion: {metric: roc_auc, test: mcnemar}
"""
    good = tmp_path / "good.yaml"
    good.write_text(base % "min")
    spec = load_project(good)
    assert spec.gates.champion.test == "mcnemar"
    bad = tmp_path / "bad.yaml"
    bad.write_text(base % "mni")
    with pytest.raises(ConfigError) as info:
        load_project(bad)
    assert "bad.yaml" in str(info.value) and "metrics.roc_auc.mni" in str(info.value)


def test_estimators_whose_state_cannot_be_checked_on_load_are_refused_up_front():
    """Training would finish and then fail to save them safely: say so at load."""
    from shipyard.errors import ConfigError

    for path in ("sklearn.ensemble.HistGradientBoostingClassifier",
                 "sklearn.neighbors.KNeighborsClassifier", "sklearn.svm.SVC"):
        with pytest.raises(ConfigError, match="cannot be saved safely"):
            validate_estimator(path)
    assert validate_estimator("sklearn.ensemble.RandomForestClassifier").__name__ == \
        "RandomForestClassifier"
