"""The filter language: every operator and precedence against known run sets,
ordering, and helpful errors for invalid expressions."""

import math

import pytest
from sqlalchemy import inspect

from shipyard.errors import FilterSyntaxError
from shipyard.tracking._filter import parse_filter, parse_order_by

INJECTION = "x'; DROP TABLE runs; --"

# name: (params, metrics, tags, fails)
RUNS = {
    "a": ({"model": "lgbm", "lr": 0.1}, {"auc": 0.95, "loss": 0.2, "val.auc": 0.9},
          {"team": "red", "note": INJECTION}, False),
    "b": ({"model": "lgbm", "lr": 0.01}, {"auc": 0.85, "loss": 0.3, "val.auc": 0.8},
          {"team": "blue"}, False),
    "c": ({"model": "rf", "lr": 0.1}, {"auc": 0.91, "loss": math.nan, "val auc": 0.5},
          {"team": "Red"}, False),
    "d": ({"model": "rf", "lr": 1e-3}, {"loss": 0.5}, {}, False),
    "e": ({"model": "LGBM", "lr": "abc"}, {"auc": 0.7, "loss": 0.9}, {"team": "red"}, True),
}

CASES = [
    # metrics: every comparison operator
    ("metrics.auc > 0.9", "ac"),
    ("metrics.auc >= 0.91", "ac"),
    ("metrics.auc < 0.85", "e"),
    ("metrics.auc <= 0.85", "be"),
    ("metrics.auc = 0.85", "b"),
    ("metrics.auc == 0.85", "b"),
    ("metrics.auc != 0.85", "ace"),
    ("metrics.auc <> 0.85", "ace"),
    ("not metrics.auc != 0.85", "bd"),
    ("metrics.auc IN (0.95, 0.7)", "ae"),
    ("metrics.auc not in (0.95, 0.7)", "bc"),
    ("metrics.auc IS NULL", "d"),
    ("metrics.loss IS NOT NULL", "abcde"),
    ("metrics.loss > 0", "abde"),          # NaN matches no comparison
    ("metrics.auc > .9", "ac"),
    ("metrics.auc>0.9", "ac"),
    ("metrics.auc > 9e-1", "ac"),
    ("metrics.auc > -1 and metrics.auc < +0.9", "be"),
    ("metrics.`val.auc` > 0.85", "a"),
    ("metrics.val.auc > 0.85", "a"),
    ("metrics.`val auc` = 0.5", "c"),
    ('metrics."val auc" = 0.5', "c"),
    # params: strings, and numbers compared numerically
    ("params.model = 'lgbm'", "ab"),
    ('params.model = "lgbm"', "ab"),
    ("params.model != 'lgbm'", "cde"),
    ("params.model LIKE 'lg%'", "ab"),
    ("params.model LIKE 'LG__'", "e"),
    ("params.model ILIKE 'lg%'", "abe"),
    ("params.model NOT LIKE 'lg%'", "cde"),
    ("params.model NOT ILIKE 'lg%'", "cd"),
    ("params.model IN ('rf', 'LGBM')", "cde"),
    ("params.lr = 0.1", "ac"),
    ("params.lr < 0.05", "bd"),
    ("params.lr >= 0.01", "abc"),
    ("params.lr = '0.1'", "ac"),
    ("params.lr IN ('0.01', '0.001')", "bd"),
    ("params.lr IN (0.01, 0.001)", "bd"),
    ("params.missing = 'x'", ""),
    ("params.missing IS NULL", "abcde"),
    # tags
    ("tags.team = 'red'", "ae"),
    ("tags.team ILIKE 'RED'", "ace"),
    ("tags.team LIKE 'R%'", "c"),
    ("tags.team IS NULL", "d"),
    (f'tags.note = "{INJECTION}"', "a"),
    ("tags.note = 'x''; DROP TABLE runs; --'", "a"),
    ("tags.note LIKE 'x''; DROP%'", "a"),
    # attributes
    ("status = 'FAILED'", "e"),
    ("status = 'failed'", "e"),
    ("attributes.status != 'FAILED'", "abcd"),
    ("status IN ('FINISHED')", "abcd"),
    ("name IN ('a', 'b')", "ab"),
    ("attributes.name LIKE 'a%'", "a"),
    ("run_name = 'c'", "c"),
    ("experiment = 'filters'", "abcde"),
    ("experiment != 'filters'", ""),
    ("start_time > 0", "abcde"),
    ("start_time >= '2000-01-01'", "abcde"),
    ("start_time < '2000-01-01T00:00'", ""),
    ("end_time IS NOT NULL", "abcde"),
    ("parent_id IS NULL", "abcde"),
    ("seed >= 0", "abcde"),
    # boolean logic and precedence: NOT > AND > OR
    ("params.model = 'rf' or params.model = 'lgbm' and metrics.auc > 0.9", "acd"),
    ("(params.model = 'rf' or params.model = 'lgbm') and metrics.auc > 0.9", "ac"),
    ("not params.model = 'rf' and metrics.auc > 0.8", "ab"),
    ("not (params.model = 'rf' and metrics.auc > 0.8)", "abde"),
    ("not not tags.team = 'red'", "ae"),
    ("((metrics.auc > 0.9))", "ac"),
    ("metrics.auc > 0.9 or tags.team = 'blue' or status = 'FAILED'", "abce"),
    ("METRICS.auc > 0.9 AND PARAMS.model = 'lgbm'", "a"),
    ("metrics.auc > 0.5 AnD NoT params.lr = 0.1", "be"),
    ("", "abcde"),
    ("   ", "abcde"),
]


@pytest.fixture
def runs_ws(workspace):
    ids = {}
    for name, (params, metrics, tags, fails) in RUNS.items():
        run = workspace.start_run("filters", name=name, params=params, tags=tags)
        run.log_metrics(metrics)
        run.end("FAILED" if fails else "FINISHED", error="boom" if fails else None)
        ids[name] = run.id
    with workspace.start_run("other", name="z") as other:
        other.log_metric("auc", 0.99)
    workspace.ids = ids
    return workspace


def names(runs):
    return "".join(sorted(r.name for r in runs))


def test_every_operator_and_precedence_selects_the_expected_runs(runs_ws):
    wrong = []
    for expr, expected in CASES:
        got = names(runs_ws.runs.search(expr, experiment="filters"))
        if got != expected:
            wrong.append((expr, expected, got))
    assert wrong == []


def test_injection_like_filters_are_matched_literally_and_change_nothing(runs_ws):
    for expr in ("params.model = 'lgbm'' OR ''1''=''1'", "params.model = \"1' OR '1'='1\"",
                 "tags.note = 'x'' OR 1=1 --'", "name = 'a; DELETE FROM runs'"):
        assert runs_ws.runs.search(expr) == []
    assert names(runs_ws.runs.search(f'tags.note = "{INJECTION}"')) == "a"
    tables = inspect(runs_ws.db.engine).get_table_names()
    assert "runs" in tables and len(runs_ws.runs.search(limit=None)) == 6


def test_run_id_and_experiment_filters(runs_ws):
    a = runs_ws.ids["a"]
    assert names(runs_ws.runs.search(f"run_id = '{a}'")) == "a"
    assert names(runs_ws.runs.search(f"attributes.run_id LIKE '{a[:10]}%'")) == "a"
    assert names(runs_ws.runs.search("metrics.auc > 0.9")) == "acz"
    assert names(runs_ws.runs.search("metrics.auc > 0.9", experiment=["other"])) == "z"


@pytest.mark.parametrize("order, expected", [
    (["metrics.auc DESC"], "acbed"),        # runs without the metric sort last
    (["metrics.auc"], "ebcad"),
    (["metrics.auc ASC"], "ebcad"),
    (["metrics.loss"], "abdec"),            # NaN sorts with the missing values
    (["name DESC"], "edcba"),
    (["attributes.name"], "abcde"),
    ("metrics.`val.auc` DESC", "ab"),
    (["params.lr DESC", "name DESC"], "ecabd"),  # strings: "abc" > "0.1" > "0.01" > "0.001"
])
def test_order_by(runs_ws, order, expected):
    found = runs_ws.runs.search(experiment="filters", order_by=order)
    got = "".join(r.name for r in found)
    assert got[:len(expected)] == expected


def test_order_by_tag_puts_runs_without_it_last(runs_ws):
    # how "red" and "Red" sort depends on the backend's collation; the NULL rule does not
    for direction in ("ASC", "DESC"):
        found = runs_ws.runs.search(experiment="filters", order_by=[f"tags.team {direction}"])
        assert found[-1].name == "d"


def test_limit_offset_status_and_default_order(runs_ws):
    newest_first = [r.name for r in runs_ws.runs.search(experiment="filters")]
    assert newest_first == list("edcba")
    assert [r.name for r in runs_ws.runs.search(experiment="filters", limit=2)] == ["e", "d"]
    assert [r.name for r in runs_ws.runs.search(experiment="filters", limit=2, offset=2)] == [
        "c", "b"]
    assert names(runs_ws.runs.search(status="FAILED")) == "e"
    assert names(runs_ws.runs.search(status=["failed", "FINISHED"], experiment="filters")) == \
        "abcde"


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize("expr, fragments", [
    ("metric.auc > 0.9", ["unknown field 'metric.auc' at column 1",
                          "use metrics.<key>, params.<key>, tags.<key> or attributes.<name>"]),
    ("metrics.auc >", ["expected a number or a 'quoted' string at column 14",
                       "the end of the filter"]),
    ("metrics.auc > 0.9 and", ["expected a field", "column 22"]),
    ("(metrics.auc > 1", ["expected ')'", "column 17"]),
    ("params.model = lgbm", ["expected a number or a 'quoted' string at column 16",
                             "'lgbm'"]),
    ("metrics.auc ~ 1", ["unexpected character '~' at column 13"]),
    ("params.model = 'lgbm", ["unterminated", "column 16"]),
    ("metrics.auc 0.9", ["expected an operator", "after 'metrics.auc'", "column 13"]),
    ("foo = 1", ["unknown field 'foo' at column 1"]),
    ("attributes.colour = 'x'", ["unknown attribute 'colour'"]),
    ("metrics.auc > 1 metrics.loss < 2", ["expected AND, OR or the end", "column 17"]),
    ("metrics.auc in 1", ["expected '(' after IN"]),
    ("metrics.auc in (1, )", ["expected a number or a 'quoted' string"]),
    ("metrics.auc is 1", ["expected NULL after IS"]),
    ("params.model = `lgbm`", ["backticks quote keys, not values"]),
    ("and", ["expected a field"]),
    ("metrics. > 1", ["expected a key right after 'metrics.'"]),
    (")", ["expected a field", "column 1"]),
])
def test_invalid_expressions_say_where_and_what_was_expected(expr, fragments):
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(expr)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("expr, fragment", [
    ("metrics.auc > 'high'", "compares with numbers"),
    ("metrics.auc LIKE '0.9%'", "LIKE at column 13 compares strings"),
    ("tags.team = 1", "tags are strings: quote the value"),
    ("params.model IN ('a', 1)", "mixes numbers and strings"),
    ("status = 1", "status is a string"),
    ("start_time > 'yesterday'", "epoch seconds or an ISO date"),
    ("params.lr LIKE 1", "expected a 'quoted' pattern after LIKE"),
])
def test_type_errors_are_filter_syntax_errors(sqlite_workspace, expr, fragment):
    with pytest.raises(FilterSyntaxError) as info:
        sqlite_workspace.runs.search(expr)
    assert fragment in str(info.value)


@pytest.mark.parametrize("item, fragment", [
    ("metrics.auc DOWN", "expected ASC, DESC"),
    ("metric.auc", "unknown field 'metric.auc'"),
    ("", "expected a field"),
])
def test_invalid_order_by(item, fragment):
    with pytest.raises(FilterSyntaxError) as info:
        parse_order_by([item])
    assert fragment in str(info.value)


def test_parse_tree_binds_not_tighter_than_and_tighter_than_or():
    tree = parse_filter("not a = 'x' and b = 'y' or c = 'z'".replace("a", "name", 1)
                        .replace("b =", "status =").replace("c =", "experiment ="))
    assert tree.op == "or"
    left, right = tree.items
    assert left.op == "and" and type(left.items[0]).__name__ == "Not"
    assert right.field.key == "experiment"
