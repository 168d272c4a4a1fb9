import doctest
import itertools

import pytest

import shipyard.train._space
from shipyard.errors import ConfigError
from shipyard.train import CandidateSpec, grid_of, make_pruner, make_sampler, suggest

import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "n": {"type": "int", "low": 1, "high": 9, "step": 2},
    "leaves": {"type": "int", "low": 2, "high": 256, "log": True},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "frac": {"type": "float", "low": 0.1, "high": 0.5, "step": 0.1},
    "act": {"type": "categorical", "choices": ["relu", "tanh", None]},
    "hidden": {"type": "categorical", "choices": [[16], [32, 16], [64, 32, 16]]},
}
CONDITIONAL = {
    "kernel": {"type": "categorical", "choices": ["linear", "rbf", "poly"]},
    "gamma": {"type": "float", "low": 0.01, "high": 1.0, "when": {"kernel": "rbf"}},
    "degree": {"type": "int", "low": 2, "high": 4, "when": {"kernel": "poly"}},
    "coef0": {"type": "float", "low": 0.0, "high": 1.0, "when": {"degree": 3}},
    "shrink": {"type": "categorical", "choices": [True, False]},
    "tol": {"type": "float", "low": 0.1, "high": 0.2, "when": {"shrink": True}},
}


def sample(space, sampler=None, n=20):
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial):
        seen.append(suggest(trial, space))
        return 0.0

    study.optimize(objective, n_trials=n)
    return seen, study


def test_each_type_is_sampled_in_range():
    seen, _ = sample(SPACE, n=30)
    for params in seen:
        assert set(params) == set(SPACE)
        assert params["n"] in {1, 3, 5, 7, 9}
        assert isinstance(params["leaves"], int) and 2 <= params["leaves"] <= 256
        assert 1e-4 <= params["lr"] <= 1.0
        assert round(params["frac"] * 10, 9) in {1, 2, 3, 4, 5}
        assert params["act"] in {"relu", "tanh", None}
        assert params["hidden"] in SPACE["hidden"]["choices"]


def test_list_choices_are_decoded_from_their_index():
    seen, study = sample(SPACE, n=10)
    for params, trial in zip(seen, study.trials, strict=True):
        assert trial.params["hidden"] in {0, 1, 2}
        assert params["hidden"] == SPACE["hidden"]["choices"][trial.params["hidden"]]
    seen[0]["hidden"].append(99)  # a copy: the space is untouched
    assert [64, 32, 16, 99] not in SPACE["hidden"]["choices"]


def test_conditional_parameters_appear_only_when_their_condition_holds():
    seen, _ = sample(CONDITIONAL, n=60)
    for params in seen:
        assert ("gamma" in params) == (params["kernel"] == "rbf")
        assert ("degree" in params) == (params["kernel"] == "poly")
        assert ("coef0" in params) == (params.get("degree") == 3)
        assert ("tol" in params) == (params["shrink"] is True)
    assert {p["kernel"] for p in seen} == {"linear", "rbf", "poly"}
    assert any("coef0" in p for p in seen)


def test_a_condition_may_come_before_the_parameter_it_names():
    space = {"gamma": CONDITIONAL["gamma"], "kernel": CONDITIONAL["kernel"]}
    seen, _ = sample(space, n=20)
    assert all(("gamma" in p) == (p["kernel"] == "rbf") for p in seen)


def test_takes_a_candidate_spec():
    cand = CandidateSpec(name="svc", estimator="sklearn.svm.SVC", search_space=CONDITIONAL)
    seen, _ = sample(cand, n=5)
    assert all("kernel" in p for p in seen)


@pytest.mark.parametrize("kind", ["grid", "random", "tpe"])
def test_same_seed_same_sequence(kind):
    space = {k: v for k, v in SPACE.items() if kind != "grid" or k not in ("lr", "leaves")}
    n = 15  # past TPE's 10 random start-up trials
    first, _ = sample(space, make_sampler(kind, 42, space), n)
    again, _ = sample(space, make_sampler(kind, 42, space), n)
    other, _ = sample(space, make_sampler(kind, 43, space), n)
    assert first == again
    assert first != other


def test_grid_covers_the_full_product():
    space = {"n": SPACE["n"], "frac": SPACE["frac"], "hidden": SPACE["hidden"]}
    grid = grid_of(space)
    assert grid == {"n": [1, 3, 5, 7, 9], "frac": [0.1, 0.2, 0.3, 0.4, 0.5],
                    "hidden": [0, 1, 2]}
    total = 5 * 5 * 3
    seen, study = sample(space, make_sampler("grid", 0, space), n=total + 5)
    assert len(study.trials) == total  # the grid sampler stops when the grid is done
    combos = {(p["n"], p["frac"], tuple(p["hidden"])) for p in seen}
    expected = {(n, f, tuple(h)) for n, f, h in
                itertools.product(grid["n"], grid["frac"], SPACE["hidden"]["choices"])}
    assert combos == expected


def test_grid_needs_a_step_for_floats():
    with pytest.raises(ConfigError, match="search_space.lr: grid search needs a finite grid"):
        grid_of({"lr": SPACE["lr"]})
    with pytest.raises(ConfigError, match="needs a search space"):
        make_sampler("grid", 0, {})


def test_grid_refuses_a_huge_grid():
    huge = {f"p{i}": {"type": "int", "low": 1, "high": 100} for i in range(3)}
    with pytest.raises(ConfigError, match="1,000,000 points"):
        grid_of(huge)


@pytest.mark.parametrize("space, match", [
    ({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, r"search_space.lr: low \(1.0\) must"),
    ({"lr": {"type": "double", "low": 0, "high": 1}}, "search_space.lr"),
    ({"a": {"type": "int", "low": 0, "high": 2, "when": {"b": 1}}}, "refers to 'b'"),
    ({"a": {"type": "int", "low": 0, "high": 2, "when": {"b": 1}},
      "b": {"type": "int", "low": 0, "high": 2, "when": {"a": 1}}}, "cycle"),
    ({"k": {"type": "categorical", "choices": ["x"]},
      "a": {"type": "int", "low": 0, "high": 2, "when": {"k": "y"}}}, "k can never be 'y'"),
    (["lr"], "mapping of parameter name"),
])
def test_bad_spaces(space, match):
    with pytest.raises(ConfigError, match=match):
        suggest(None, space)


def test_unknown_sampler_and_pruner():
    with pytest.raises(ConfigError, match="unknown search kind 'cmaes'"):
        make_sampler("cmaes", 0)
    with pytest.raises(ConfigError, match="unknown pruner 'asha'"):
        make_pruner("asha")


def test_pruners():
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband"), optuna.pruners.HyperbandPruner)


def test_docstring_examples():
    assert doctest.testmod(shipyard.train._space).failed == 0
