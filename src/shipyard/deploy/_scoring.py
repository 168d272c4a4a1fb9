"""Batch scoring: a registered model over a Parquet or CSV file, chunk by
chunk, into a Parquet file; memory stays bounded by the chunk size whatever
the file's size."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace

DEFAULT_CHUNK_ROWS = 50_000


@dataclass(frozen=True)
class ScoreResult:
    """What :func:`score_file` wrote."""

    model: str
    rows: int
    chunks: int
    output: Path
    runtime: str


def score_file(ws: Workspace, ref: str, input: str | Path, output: str | Path, *,
               chunk_rows: int = DEFAULT_CHUNK_ROWS, columns_out: Sequence[str] | None = None,
               onnx: bool = True, progress: Callable[[int], None] | None = None) -> ScoreResult:
    """Score every row of ``input`` with model ``ref`` into Parquet ``output``.

    Parameters
    ----------
    ws
        Workspace of the registry.
    ref
        ``fraud@champion``, ``fraud@7`` ...
    input
        A ``.parquet`` or ``.csv`` file holding at least the model's input columns.
    output
        The Parquet file to write: the ``columns_out`` of the input, then
        ``prediction`` and, for classifiers, ``proba_<class>`` per class.
    chunk_rows
        Rows read, scored and written at a time (bounds the memory used).
    columns_out
        Input columns copied to the output (default: all of them).
    onnx
        Use the version's verified ONNX graph when it has one.
    progress
        Called with the number of rows after each chunk.

    Raises
    ------
    NotFoundError
        No such input file or model.
    ConfigError
        Unknown format, missing columns, bad ``chunk_rows``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shipyard.deploy._loaded import LoadedModel
    from shipyard.deploy._schema import Schema

    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be at least 1, got {chunk_rows}")
    source, target = Path(input), Path(output)
    if not source.is_file():
        raise NotFoundError(f"input file {source} does not exist",
                            hint="pass a .parquet or .csv file")
    suffix = source.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise ConfigError(f"cannot read {source}: expected a .parquet or .csv file")
    version = ws.models.get(ref)
    model = version.load()
    fast = None
    if onnx:
        from shipyard.registry import load_onnx

        fast = load_onnx(ws, version, classes=getattr(model, "classes_", None))
    loaded = LoadedModel(version, model, Schema.from_signature(version.signature), onnx=fast)
    needed = loaded.schema.names
    available = _columns(source, suffix)
    missing = [c for c in needed if c not in available]
    if missing:
        raise ConfigError(f"{source} lacks column {missing[0]!r}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                          + f" that {version.ref} needs", hint="the model takes: "
                          + ", ".join(needed))
    carried = list(available) if columns_out is None else list(columns_out)
    unknown = [c for c in carried if c not in available]
    if unknown:
        raise ConfigError(f"--columns-out names {unknown[0]!r}, which {source} does not have")

    rows = chunks = 0
    writer = None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        for frame in _chunks(source, suffix, chunk_rows, sorted(set(needed) | set(carried))):
            result = loaded.predict(frame[needed])
            out = frame[carried].reset_index(drop=True)
            out["prediction"] = result.predictions
            if result.probabilities is not None:
                for i, cls in enumerate(result.classes or range(result.probabilities.shape[1])):
                    out[f"proba_{cls}"] = result.probabilities[:, i]
            table = pa.Table.from_pandas(out, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(frame)
            chunks += 1
            if progress is not None:
                progress(rows)
        if writer is None:  # an empty input: still an output, with the columns
            raise ConfigError(f"{source} holds no rows")
        writer.close()
        writer = None
        partial.replace(target)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    return ScoreResult(version.ref, rows, chunks, target, loaded.runtime)


def count_rows(path: str | Path) -> int | None:
    """Rows of a Parquet file from its footer; None for CSV (unknown until read)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def _columns(source: Path, suffix: str) -> list[str]:
    if suffix == ".csv":
        import pandas as pd

        return list(pd.read_csv(source, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(source).schema_arrow.names)


def _chunks(source: Path, suffix: str, chunk_rows: int, columns: list[str]
            ) -> Iterator[pd.DataFrame]:
    if suffix == ".csv":
        import pandas as pd

        with pd.read_csv(source, chunksize=chunk_rows, usecols=columns) as reader:
            yield from reader
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(source) as parquet:
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
            yield batch.to_pandas()

