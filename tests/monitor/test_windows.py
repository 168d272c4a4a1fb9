"""Windows over the prediction log: cut by time or rows, filtered by version
and role, rows expanded from requests, late labels joined in any order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import MonitorError
from shipyard.monitor import Window, labels_for, output_names, window_data, windows

from .traffic import T0, Clock, install, log_feedback, log_requests


class Scorer:
    """Predicts 1 when ``x`` > 0, probability from ``x``."""

    def predict(self, frame):
        return (frame["x"] > 0).astype(int).to_numpy()

    def predict_proba(self, frame):
        p = 1 / (1 + np.exp(-frame["x"].to_numpy()))
        return np.c_[1 - p, p]


def rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(start, start + n) / 10.0 - 1,
                         "city": ["paris", "lyon"][start % 2]})


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    install(monkeypatch, clock)
    return clock


@pytest.fixture
def home(tmp_path, clock):
    """Model ``m``: v1 primary (3 rows a request, every 10 min for 3 hours),
    v2 canary (1 row, every 30 min), one refused request; model ``other``."""
    scorer = Scorer()
    log_requests(tmp_path, clock, "m", [(T0 + 600 * i, rows(3, i)) for i in range(18)],
                 scorer=scorer, role="primary", prefix="p")
    log_requests(tmp_path, clock, "m", [(T0 + 1800 * i + 5, rows(1, i)) for i in range(6)],
                 scorer=scorer, version=2, role="candidate", prefix="c")
    log_requests(tmp_path, clock, "m", [(T0 + 100, None)], status=422, prefix="bad",
                 error="field 'x': expected a number")
    log_requests(tmp_path, clock, "other", [(T0 + 50, rows(2))], scorer=scorer, prefix="o")
    return tmp_path


def test_time_windows_are_clock_aligned_and_filtered(home):
    hourly = windows(home, "m", every=3600)
    assert [(w.start - T0, w.end - T0, w.n) for w in hourly] == [
        (0, 3600, 6 * 3 + 2), (3600, 7200, 6 * 3 + 2), (7200, 10800, 6 * 3 + 2)]
    assert all(w.version is None and w.role is None and w.model == "m" for w in hourly)
    v2 = windows(home, "m", version=2, every=3600)
    assert [w.n for w in v2] == [2, 2, 2] and all(w.version == 2 for w in v2)
    assert [w.n for w in windows(home, "m", role="primary", every=7200)] == [36, 18]
    bounded = windows(home, "m", start=T0 + 1800, end=T0 + 5400, every=3600)
    assert [(w.start - T0, w.end - T0, w.n) for w in bounded] == [(1800, 3600, 10),
                                                                   (3600, 5400, 10)]
    assert windows(home, "nobody") == []


def test_row_windows_and_one_whole_window(home):
    cut = windows(home, "m", version=1, rows=20)
    assert [w.n for w in cut] == [21, 21, 12]
    assert cut[0].start == T0 and cut[1].start == cut[0].end
    whole = windows(home, "m")
    assert len(whole) == 1 and whole[0].n == 60 and whole[0].start == T0
    assert whole[0].end > T0 + 600 * 17
    with pytest.raises(MonitorError, match="not both"):
        windows(home, "m", every=60, rows=10)


def test_window_data_expands_requests_into_rows(home):
    window = windows(home, "m", version=1, end=T0 + 1200)[0]
    frame = pd.concat(list(window_data(home, window)), ignore_index=True)
    assert list(frame.columns) == ["x", "city", "request_id", "ts", "version", "role", "status",
                                   "row", "prediction", "score"]
    assert len(frame) == 6 and set(frame["request_id"]) == {"p0", "p1"}
    expected = pd.concat([rows(3, 0), rows(3, 1)], ignore_index=True)
    assert frame["x"].tolist() == expected["x"].tolist()
    assert frame["row"].tolist() == [0, 1, 2, 0, 1, 2]
    assert frame["prediction"].tolist() == Scorer().predict(expected).tolist()
    assert np.allclose(frame["score"], Scorer().predict_proba(expected)[:, 1])
    assert (frame["status"] == 200).all() and (frame["role"] == "primary").all()
    assert frame["ts"].iloc[0] == pd.Timestamp(T0, unit="s", tz="UTC")
    chunks = list(window_data(home, windows(home, "m")[0], chunk_rows=7))
    assert [len(c) for c in chunks] == [7] * 8 + [4]


def test_an_input_named_like_an_output_keeps_its_name():
    names = output_names(["score", "prediction", "_score"])
    assert names["score"] == "__score" and names["prediction"] == "_prediction"
    assert names["request_id"] == "request_id"


def test_late_labels_join_in_any_order_within_the_late_arrival(home, clock):
    window = windows(home, "m", version=1, end=T0 + 3600)[0]  # p0 .. p5
    day = 86400
    log_feedback(home, clock, [
        (T0 + 3 * day, "p5", [1, 1, 1]),          # 3 days late, after the others' labels
        (T0 + 60, "p0", 0),                       # right away
        (T0 + 2 * day, "p3", 1),                  # next partitions (another date)
        (T0 + 8 * day, "p4", 1),                  # past the 7-day late arrival
        (T0 + 600 * 2 - 900, "p2", 1),            # 15 minutes before its prediction
        (T0 + 700, "p1", 0),
        (T0 + 5 * day, "p1", 1),                  # a correction: the latest wins
        (T0 + 60, "c0", 1),                       # the canary's request
    ])
    log_feedback(home, clock, [(T0 + 100, "p3", 0)], model="other")  # another model's
    labels = labels_for(home, window, late_arrival_seconds=7 * day)
    got = dict(zip(labels["request_id"], labels["label"]))
    assert got == {"p0": 0, "p1": 1, "p3": 1, "p5": [1, 1, 1]}
    short = labels_for(home, window, late_arrival_seconds=3600)  # p1's correction too late
    assert dict(zip(short["request_id"], short["label"])) == {"p0": 0, "p1": 0}
    everyone = labels_for(home, Window("m", None, None, T0, T0 + 3600, 0),
                          late_arrival_seconds=7 * day)
    assert set(everyone["request_id"]) == {"p0", "p1", "p3", "p5", "c0"}


def test_arrow_and_one_by_one_json_parsing_agree(tmp_path, clock):
    """Batches are parsed in Arrow when their JSON is regular; a refused
    request with odd inputs sends its batch down the one-by-one path; both
    give the same rows."""
    import pyarrow as pa

    from shipyard.monitor._windows import (
        _arrow_inputs,
        _arrow_outputs,
        _outputs,
        _python_inputs,
    )

    mixed = pd.DataFrame({"x": [1.5, None, 3.0], "city": ["paris", None, "lyon"],
                          "n": [1, 2, None]})
    log_requests(tmp_path, clock, "m", [(T0 + i, mixed.iloc[:i + 1]) for i in range(3)],
                 scorer=Scorer(), prefix="ok")
    log_requests(tmp_path, clock, "m", [(T0 + 10, pd.DataFrame({"x": ["abc"], "city": [7]}))],
                 status=422, prefix="bad")
    window = windows(tmp_path, "m")[0]
    frame = pd.concat(list(window_data(tmp_path, window)), ignore_index=True)
    frame["order"] = frame["request_id"].map({"ok0": 0, "ok1": 1, "ok2": 2, "bad0": 3})
    frame = frame.sort_values(["order", "row"]).reset_index(drop=True)
    assert frame["request_id"].tolist() == ["ok0", "ok1", "ok1", "ok2", "ok2", "ok2", "bad0"]
    assert np.allclose(frame["x"].iloc[:6].astype(float), [1.5, 1.5, np.nan, 1.5, np.nan, 3.0],
                       equal_nan=True)
    assert frame["x"].iloc[6] == "abc" and frame["city"].iloc[6] == 7
    assert frame["prediction"].tolist()[:6] == [1, 1, 0, 1, 0, 1]
    assert frame["prediction"].iloc[6] is None and np.isnan(frame["score"].iloc[6])

    texts = pa.array([mixed.iloc[:i + 1].to_json(orient="records") for i in range(3)])
    fast, counts = _arrow_inputs(texts, ["x", "city", "n", "absent"], {})
    batch = pa.RecordBatch.from_pydict({"inputs": texts})
    (slow, _, slow_counts), = _python_inputs(batch, [0, 1, 2], ["x", "city", "n", "absent"],
                                             step=100)
    assert counts.tolist() == slow_counts.tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False)
    outputs = pa.array(['{"predictions": [1], "probabilities": [[0.4, 0.6]]}', None,
                        ('{"predictions": ["a", 0, 2], "probabilities": [[1, 0], [0, 1], '
                         '[0.5, null]]}')])
    sizes = np.array([1, 2, 3])
    got = _arrow_outputs(outputs, sizes, [0, 1], {})
    want = _outputs(outputs.to_pylist(), sizes, [0, 1])
    assert got is None  # "a" and 0 in one list: types change, so the one-by-one path decides
    outputs = pa.array([outputs[0].as_py(), None,
                        ('{"predictions": [0, 0, 2], "probabilities": [[1, 0], [0, 1], '
                         '[0.5, null]]}')])
    got = _arrow_outputs(outputs, sizes, [0, 1], {})
    want = _outputs(outputs.to_pylist(), sizes, [0, 1])
    assert got[0].tolist() == want[0].tolist() == [1, None, None, 0, 0, 2]
    np.testing.assert_array_equal(got[1], want[1])
