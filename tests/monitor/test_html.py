"""The HTML monitor page: one self-contained file with the window's drift,
quality and performance, reference-vs-window distributions of drifted
columns, drift and performance over time, and the alerts; data from the
report cannot inject markup."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from monitor.alerting import drift_rule, report_dict, watched, ws  # noqa: F401
from shipyard.data import FrameSketch
from shipyard.errors import MonitorError
from shipyard.monitor._html import distribution

HOSTILE = '<img src=x onerror="alert(1)">$x^2$'


def images(page: str) -> list[str]:
    return re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page)


def test_a_page_of_stored_reports_has_every_section_and_the_history_plots(ws):  # noqa: F811
    rules = {"alerts": [drift_rule(for_windows=1)]}
    for drifted, accuracy in (((), 0.86), (("age",), 0.8), (("age", "workclass"), 0.7)):
        ws.monitor.record(report_dict(
            drifted=drifted, realized={"accuracy": {"value": accuracy, "ci_low": accuracy - .05,
                                                    "ci_high": accuracy + .05, "n": 200}},
            estimated={"accuracy": {"value": accuracy + 0.02}}), policy=rules)
    page = ws.monitor.html("income", distributions=False)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for section in ("summary", "drift", "quality", "performance", "history", "alerts"):
        assert f'<section id="{section}">' in page
    assert "Monitoring of income" in page and ">alert<" in page
    assert "2 / 3" in page  # drifted columns
    assert images(page) == ["dataset drift share over time",
                            "realized and estimated performance over time"]
    assert "input_drift" in page and "firing" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_one_window_says_the_history_needs_two(ws):  # noqa: F811
    ws.monitor.record(report_dict())
    page = ws.monitor.html("income")
    assert "the history plots need two" in page and images(page) == []
    assert "No performance figures in this window" in page


def test_report_data_cannot_inject_markup(ws):  # noqa: F811
    data = report_dict()
    data["drift"][HOSTILE] = {**data["drift"]["age"], "drifted": True,
                              "effect_name": HOSTILE}
    data["quality"][HOSTILE] = {"value": 1.0, "threshold": 0.1, "failed": True,
                                "detail": {HOSTILE: HOSTILE}}
    data["reasons"] = [HOSTILE]
    ws.monitor.record(data)
    page = ws.monitor.html("income")
    assert HOSTILE not in page and "onerror=\"alert" not in page
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;$x^2$" in page


def test_an_older_report_can_be_shown(ws):  # noqa: F811
    first = ws.monitor.record(report_dict(drifted=("age",))).report
    ws.monitor.record(report_dict())
    page = ws.monitor.html("income", report_id=first.id)
    assert f"report {first.id} ·" in page and "1 / 3" in page
    other = ws.monitor.record(report_dict("fraud")).report
    with pytest.raises(MonitorError, match=f"report {other.id} is of fraud, not income"):
        ws.monitor.html("income", report_id=other.id)


def test_a_model_without_reports_has_no_page(ws):  # noqa: F811
    with pytest.raises(MonitorError, match="fraud has no monitor reports yet"):
        ws.monitor.html("fraud")


def test_the_drifted_columns_of_a_real_window_are_drawn_against_the_reference(watched):  # noqa: F811
    result = watched.monitor.check("toy", since="1h")
    drifted = {c for c, d in result.report.report["drift"].items() if d.get("drifted")}
    assert {"x0", "age", "colour"} <= drifted
    page = watched.monitor.html("toy", report_id=result.report.id)
    drawn = {alt.removeprefix("reference and window distributions of ")
             for alt in images(page) if alt.startswith("reference and window")}
    assert drawn == drifted


def test_distributions_from_sketches():
    ref = FrameSketch.from_frame(pd.DataFrame({"x": [float(i) for i in range(100)],
                                               "c": ["a"] * 70 + ["b"] * 30}),
                                 {"x": "numeric", "c": "categorical"})
    cur = FrameSketch.from_frame(pd.DataFrame({"x": [float(i) + 50 for i in range(100)],
                                               "c": ["b"] * 50 + ["new"] * 50}),
                                 {"x": "numeric", "c": "categorical"})
    numeric = distribution(ref.columns["x"], cur.columns["x"], bins=10)
    assert numeric["edges"][0] == 0 and numeric["edges"][-1] == 149
    assert sum(numeric["reference"]) == pytest.approx(1)
    assert sum(numeric["current"]) == pytest.approx(1)
    assert numeric["current"][:3] == [0, 0, 0] and numeric["reference"][-3:] == [0, 0, 0]
    categorical = distribution(ref.columns["c"], cur.columns["c"])
    shares = dict(zip(categorical["categories"], zip(categorical["reference"],
                                                     categorical["current"])))
    assert shares == {"a": (0.7, 0.0), "b": (0.3, 0.5), "new": (0.0, 0.5)}
    empty = FrameSketch.from_frame(pd.DataFrame({"x": [None]}, dtype=float), {"x": "numeric"})
    assert distribution(ref.columns["x"], empty.columns["x"]) is None
