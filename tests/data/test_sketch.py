"""FrameSketch: mergeable, JSON-storable summaries whose answers stay within
the KLL rank error of the exact ones."""

from __future__ import annotations

import json

import datasketches  # noqa: F401  (a dev dependency: fail loudly if missing)
import numpy as np
import pandas as pd
import pytest

from shipyard.data import ColumnSketch, FrameSketch
from shipyard.errors import DataError


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({
        "amount": rng.lognormal(3, 1, n),
        "age": rng.integers(18, 90, n),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "vip": rng.random(n) < 0.2,
    })
    out.loc[rng.random(n) < 0.05, "amount"] = np.nan
    out.loc[rng.random(n) < 0.02, "city"] = None
    return out


KINDS = {"amount": "numeric", "age": "numeric", "city": "categorical", "vip": "boolean"}


def exact_cdf(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    values = np.sort(values[np.isfinite(values)])
    return np.searchsorted(values, points, side="right") / len(values)


def test_counts_extremes_and_moments_are_exact():
    data = frame(50_000)
    sketch = FrameSketch.from_frame(data, KINDS)
    amount = sketch.columns["amount"]
    present = data["amount"].dropna()
    assert (amount.count, amount.missing) == (len(present), data["amount"].isna().sum())
    assert amount.min == present.min() and amount.max == present.max()
    assert amount.mean == pytest.approx(present.mean(), rel=1e-12)
    assert amount.std == pytest.approx(present.std(), rel=1e-9)
    city = sketch.columns["city"]
    assert city.counts == data["city"].value_counts().to_dict()
    assert city.missing == data["city"].isna().sum()
    assert sketch.columns["vip"].counts == {"True": int(data["vip"].sum()),
                                            "False": int((~data["vip"]).sum())}
    assert sketch.rows == 50_000


def test_cdf_and_quantiles_stay_within_the_rank_error():
    data = frame(300_000, seed=1)
    amount = FrameSketch.from_frame(data, KINDS).columns["amount"]
    eps = amount.rank_error
    assert 0 < eps < 0.007  # k = 400
    values = data["amount"].to_numpy()
    points = np.quantile(values[np.isfinite(values)], np.linspace(0.01, 0.99, 99))
    assert np.max(np.abs(np.array(amount.cdf(points)) - exact_cdf(values, points))) <= eps
    qs = np.linspace(0.05, 0.95, 19)
    got = np.array(amount.quantiles(qs))
    assert np.max(np.abs(exact_cdf(values, got) - qs)) <= eps + 1e-6
    weights = amount.items()[1]
    assert weights.sum() == amount.count


def test_a_small_column_is_exact():
    values = np.array([3.0, 1.0, 2.0, 2.0, 10.0])
    sketch = ColumnSketch("numeric").update(values)
    assert sketch.rank_error == 0.0
    assert sketch.cdf([0.5, 2.0, 9.0, 10.0]) == [0.0, 0.6, 0.8, 1.0]
    items, weights = sketch.items()
    assert items.tolist() == [1.0, 2.0, 2.0, 3.0, 10.0] and weights.sum() == 5


def test_chunks_merge_into_the_whole():
    data = frame(40_000, seed=2)
    whole = FrameSketch.from_frame(data, KINDS)
    left = FrameSketch.from_frame(data.iloc[:15_000], KINDS)
    right = FrameSketch(KINDS)
    for lo in range(15_000, 40_000, 5_000):
        right.update(data.iloc[lo:lo + 5_000])
    merged = left.merge(right)
    assert merged.rows == whole.rows
    for name in ("amount", "age"):
        a, b = merged.columns[name], whole.columns[name]
        assert (a.count, a.missing, a.min, a.max) == (b.count, b.missing, b.min, b.max)
        assert a.sum == pytest.approx(b.sum)
        points = np.array(b.quantiles([0.1, 0.5, 0.9]))
        assert np.allclose(a.cdf(points), b.cdf(points), atol=a.rank_error + b.rank_error)
    assert merged.columns["city"].counts == whole.columns["city"].counts


def test_json_round_trip_gives_the_same_answers():
    sketch = FrameSketch.from_frame(frame(20_000, seed=3), KINDS)
    text = json.dumps(sketch.to_dict(), allow_nan=False)
    back = FrameSketch.from_dict(json.loads(text))
    assert list(back.columns) == list(sketch.columns) and back.rows == sketch.rows
    for name, col in sketch.columns.items():
        other = back.columns[name]
        assert (other.kind, other.count, other.missing) == (col.kind, col.count, col.missing)
        if col.numeric:
            assert other.quantiles([0.1, 0.5, 0.9]) == col.quantiles([0.1, 0.5, 0.9])
            assert other.cdf([10.0, 50.0]) == col.cdf([10.0, 50.0])
        else:
            assert other.counts == col.counts
    with pytest.raises(DataError, match="not a frame sketch"):
        FrameSketch.from_dict({"columns": {}})


def test_many_categories_fold_into_other_keeping_the_first_exact():
    values = pd.Series([f"v{i}" for i in range(500)] + ["v0"] * 100)
    sketch = ColumnSketch("categorical").update(values)
    assert len(sketch.counts) == 201 and sketch.folded
    assert sketch.counts["v0"] == 101 and sketch.counts["__other__"] == 300
    assert sum(sketch.counts.values()) == sketch.count == 600


def test_integral_floats_and_integers_are_one_category():
    sketch = ColumnSketch("categorical").update(pd.Series([1, 1.0, 2.0, "x"], dtype=object))
    assert sketch.counts == {"1": 2, "2": 1, "x": 1}


def test_datetimes_are_sketched_as_epoch_seconds():
    stamps = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", None], utc=True))
    sketch = ColumnSketch("datetime").update(stamps)
    assert (sketch.count, sketch.missing) == (2, 1)
    assert sketch.min == pd.Timestamp("2024-01-01", tz="UTC").timestamp()


def test_refusals_name_the_problem():
    sketch = FrameSketch({"a": "numeric"})
    with pytest.raises(DataError, match="lacks column"):
        sketch.update(pd.DataFrame({"b": [1.0]}))
    with pytest.raises(DataError, match="cannot merge"):
        ColumnSketch("numeric").merge(ColumnSketch("categorical"))
    with pytest.raises(DataError, match="unknown column kind"):
        ColumnSketch("audio")
    with pytest.raises(DataError, match="needs a numeric column"):
        ColumnSketch("categorical").quantiles([0.5])


# ------------------------------------------------------- Arrow, no pandas
def same_summary(a: ColumnSketch, b: ColumnSketch) -> None:
    assert (a.kind, a.count, a.missing) == (b.kind, b.count, b.missing)
    if a.numeric:
        assert (a.min, a.max) == (b.min, b.max)
        assert a.sum == pytest.approx(b.sum, rel=1e-12)
        assert a.sum_sq == pytest.approx(b.sum_sq, rel=1e-12)
        points = np.array(b.quantiles([0.1, 0.5, 0.9]))
        assert np.allclose(a.cdf(points), b.cdf(points), atol=a.rank_error + b.rank_error)
    else:
        assert a.counts == b.counts


def test_arrow_batches_give_the_pandas_summary():
    import pyarrow as pa

    data = frame(30_000, seed=4)
    data.loc[::97, "amount"] = np.inf  # ±inf count as missing on both paths
    data["code"] = np.where(np.random.default_rng(4).random(30_000) < 0.5, 1.0, 2.0)
    data.loc[::50, "code"] = np.nan  # a float categorical: NaN is missing, 1.0 is "1"
    kinds = {**KINDS, "code": "categorical"}
    via_pandas = FrameSketch.from_frame(data, kinds)
    table = pa.Table.from_pandas(data, preserve_index=False)
    batches = table.to_batches(max_chunksize=7_000)
    via_arrow = FrameSketch(kinds)
    for batch in batches:
        via_arrow.update(batch)
    assert via_arrow.rows == via_pandas.rows == 30_000
    for name in kinds:
        same_summary(via_arrow.columns[name], via_pandas.columns[name])
    # dictionary-encoded strings (as Parquet gives them) count the same
    city = ColumnSketch("categorical").update(table.column("city").dictionary_encode())
    assert city.counts == via_pandas.columns["city"].counts
    assert city.missing == data["city"].isna().sum()


def test_arrow_integers_booleans_and_timestamps_read_as_numbers():
    import pyarrow as pa

    ints = ColumnSketch("numeric").update(pa.array([3, None, 1, 2], pa.int32()))
    assert (ints.count, ints.missing, ints.min, ints.max, ints.sum) == (3, 1, 1.0, 3.0, 6.0)
    flags = ColumnSketch("numeric").update(pa.chunked_array([[True, False], [True, None]]))
    assert (flags.count, flags.missing, flags.sum) == (3, 1, 2.0)
    stamps = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02", None], utc=True))
    for unit in ("s", "ms", "us", "ns"):
        arrow = pa.array(stamps, pa.timestamp(unit, tz="UTC"))
        got = ColumnSketch("datetime").update(arrow)
        want = ColumnSketch("datetime").update(stamps)
        assert (got.count, got.missing, got.min, got.max) == (want.count, want.missing,
                                                                want.min, want.max)
    naive = ColumnSketch("datetime").update(pa.array([0, 86_400], pa.timestamp("s")))
    assert (naive.min, naive.max) == (0.0, 86_400.0)
    text = ColumnSketch("numeric").update(pa.array(["1.5", "x", None]))
    assert (text.count, text.missing, text.sum) == (1, 2, 1.5)


def test_a_parquet_file_streams_in_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = frame(50_000, seed=5)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path,
                   row_group_size=8_000)
    got = FrameSketch(KINDS).update_parquet(path, batch_size=3_000)
    want = FrameSketch.from_frame(data, KINDS)
    assert got.rows == 50_000
    for name in KINDS:
        same_summary(got.columns[name], want.columns[name])
    with pytest.raises(DataError, match="lacks column"):
        FrameSketch({"nope": "numeric"}).update_parquet(path)
