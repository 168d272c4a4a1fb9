"""Batch scoring: a file in, a Parquet file of predictions out, chunk by
chunk, with bounded memory and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from .conftest import toy_frame


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """300,000 rows in 30 row groups, with an ``id`` column to carry."""
    path = tmp_path_factory.mktemp("batch") / "rows.parquet"
    with pq.ParquetWriter(path, pa.Table.from_pandas(
            toy_frame(10, seed=0).drop(columns="y").assign(id=np.arange(10)),
            preserve_index=False).schema) as writer:
        for i in range(30):
            frame = toy_frame(10_000, seed=i).drop(columns="y")
            frame["id"] = np.arange(i * 10_000, (i + 1) * 10_000)
            writer.write_table(pa.Table.from_pandas(frame, preserve_index=False))
    return path


def test_scores_a_parquet_file_like_in_memory_predictions(served, tmp_path):
    from shipyard.deploy import score_file

    ws = served[0]
    frame = toy_frame(2_500, seed=4).drop(columns="y")
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=1_000)
    result = score_file(ws, "toy@champion", tmp_path / "in.parquet", tmp_path / "out.parquet",
                        chunk_rows=700, columns_out=["colour"])
    assert (result.rows, result.chunks) == (2_500, 4)
    out = pd.read_parquet(tmp_path / "out.parquet")
    model = ws.models.load("toy@champion")
    assert list(out.columns) == ["colour", "prediction", "proba_0", "proba_1"]
    np.testing.assert_array_equal(out["prediction"], model.predict(frame))
    np.testing.assert_allclose(out[["proba_0", "proba_1"]], model.predict_proba(frame),
                               atol=1e-4)  # scored through ONNX: float32


def test_scores_a_csv_file_through_the_cli(served, tmp_path, monkeypatch):
    from shipyard.cli import app

    ws = served[0]
    frame = toy_frame(1_000, seed=6).drop(columns="y")
    frame.to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setenv("SHIPYARD_HOME", str(ws.settings.home))
    result = CliRunner().invoke(app, ["predict", "toy@champion", "--input",
                                      str(tmp_path / "in.csv"), "--output",
                                      str(tmp_path / "out.parquet"), "--chunk-rows", "300"])
    assert result.exit_code == 0, result.output
    assert "scored 1,000 rows" in result.output
    out = pd.read_parquet(tmp_path / "out.parquet")
    model = ws.models.load("toy@champion")
    np.testing.assert_array_equal(out["prediction"], model.predict(pd.read_csv(tmp_path / "in.csv")))


def test_memory_stays_bounded_on_a_large_file(served, big_file, tmp_path):
    """Scoring 300,000 rows in 10,000-row chunks allocates a small fraction of
    what scoring the whole file in memory does, and writes the same predictions."""
    ws = served[0]
    out = tmp_path / "scored.parquet"
    script = f"""
import json, tracemalloc
from shipyard import Workspace
from shipyard.deploy import score_file
ws = Workspace.open({str(ws.settings.home)!r})
ws.models.load("toy@champion")            # imports and model load are not the scoring
tracemalloc.start()
r = score_file(ws, "toy@champion", {str(big_file)!r}, {str(out)!r}, chunk_rows=10_000,
               columns_out=["id"])
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
import pandas as pd
ws.models.load("toy@champion").predict_proba(pd.read_parquet({str(big_file)!r}))
whole = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"peak": peak, "whole": whole, "chunks": r.chunks}}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    whole = pd.read_parquet(big_file)
    assert stats["chunks"] == 30
    assert stats["peak"] < stats["whole"] / 5, stats
    scored = pd.read_parquet(out)
    model = ws.models.load("toy@champion")
    assert scored["id"].tolist() == whole["id"].tolist()
    np.testing.assert_allclose(scored["proba_1"], model.predict_proba(whole.drop(columns="id"))[:, 1],
                               atol=1e-4)  # scored through ONNX: float32


def test_clear_errors(served, tmp_path):
    from shipyard.errors import ConfigError, NotFoundError
    from shipyard.deploy import score_file

    ws = served[0]
    with pytest.raises(NotFoundError, match="does not exist"):
        score_file(ws, "toy@champion", tmp_path / "nope.parquet", tmp_path / "o.parquet")
    toy_frame(20).drop(columns=["y", "colour"]).to_parquet(tmp_path / "partial.parquet")
    with pytest.raises(ConfigError, match="lacks column 'colour'"):
        score_file(ws, "toy@champion", tmp_path / "partial.parquet", tmp_path / "o.parquet")
    toy_frame(20).to_parquet(tmp_path / "ok.parquet")
    with pytest.raises(NotFoundError):
        score_file(ws, "no-such-model@champion", tmp_path / "ok.parquet", tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()
