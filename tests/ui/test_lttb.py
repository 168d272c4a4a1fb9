"""LTTB downsampling: bounded size, endpoints kept, extremes kept, fast."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shipyard.ui import lttb


def test_keeps_first_last_and_order():
    x = np.arange(50_000.0)
    y = np.random.default_rng(0).normal(size=x.size).cumsum()
    xs, ys = lttb(x, y, 2000)
    assert len(xs) == 2000 and xs[0] == 0 and xs[-1] == x[-1]
    assert np.all(np.diff(xs) > 0)
    assert set(xs) <= set(x)
    assert np.array_equal(ys, y[xs.astype(int)])


def test_keeps_a_lone_spike():
    y = np.zeros(100_000)
    y[31_337] = 50.0
    xs, ys = lttb(np.arange(y.size, dtype=float), y, 500)
    assert ys.max() == 50.0 and 31_337 in xs


def test_short_series_come_back_whole():
    xs, ys = lttb([0, 1, 2], [3.0, 1.0, 2.0], 2000)
    assert list(xs) == [0, 1, 2] and list(ys) == [3, 1, 2]


def test_drops_values_that_cannot_be_drawn():
    xs, ys = lttb([0, 1, 2, 3], [1.0, np.nan, np.inf, 4.0], 10)
    assert list(xs) == [0, 3] and list(ys) == [1, 4]


def test_refuses_mismatched_input():
    with pytest.raises(ValueError):
        lttb([0, 1], [1.0], 10)


def test_a_million_points_in_well_under_a_second():
    x = np.arange(1_000_000.0)
    y = np.sin(x / 1000)
    start = time.perf_counter()
    xs, _ = lttb(x, y, 2000)
    assert time.perf_counter() - start < 0.5
    assert len(xs) == 2000
