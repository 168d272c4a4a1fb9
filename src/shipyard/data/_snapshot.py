"""Snapshots: a DataFrame as an Arrow table, its content hash and its Parquet bytes."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shipyard.errors import DataError

HASH_VERSION = b"shipyard-table-hash-v1\n"


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table, without its index.

    The pandas metadata is kept so that loading restores pandas dtypes
    (nullable integers, categoricals, ``str``).

    Raises
    ------
    DataError
        Duplicate column names, or a column whose values Arrow cannot hold
        in one type (e.g. ints and strings mixed in an object column).
    """
    names = [str(c) for c in frame.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"the table has duplicate column names: {duplicates}",
                        hint="rename the columns so that each name appears once")
    try:
        with warnings.catch_warnings():
            # pyarrow reads tz-aware columns through Series.values, which pandas 3.1
            # deprecates; the data is unaffected and there is nothing for users to do.
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        column = _failing_column(frame)
        where = f"column {column!r}" if column is not None else "a column"
        raise DataError(f"{where} cannot be stored: {str(exc).splitlines()[0]}",
                        hint="give the column one type, e.g. df[col] = df[col].astype(str)"
                        ) from exc


def _failing_column(frame: pd.DataFrame) -> str | None:
    for name in frame.columns:
        try:
            pa.Array.from_pandas(frame[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return str(name)
    return None


def _canonical_type(dtype: pa.DataType) -> pa.DataType:
    """One Arrow type per logical type, so the hash ignores offset widths."""
    if pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return pa.string()
    if pa.types.is_large_binary(dtype) or pa.types.is_binary_view(dtype):
        return pa.binary()
    if pa.types.is_large_list(dtype):
        return pa.list_(_canonical_type(dtype.value_type))
    return dtype


def content_hash(table: pa.Table) -> str:
    """sha256 of a table's column names, logical types and values.

    Independent of chunking, schema metadata, offset widths (``string`` vs
    ``large_string``), dictionary index width and the bytes Arrow leaves
    under null slots, so the same table read from CSV, Parquet or a
    DataFrame hashes the same.

    >>> content_hash(pa.table({"a": [1, 2]})) == content_hash(
    ...     pa.table({"a": pa.chunked_array([[1], [2]])}))
    True
    """
    digest = hashlib.sha256(HASH_VERSION)

    def feed(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    feed(str(table.num_rows).encode())
    for name, column in zip(table.column_names, table.columns):
        dtype = column.type
        header: dict[str, Any] = {"name": name}
        if pa.types.is_dictionary(dtype):
            header["dictionary"] = {"ordered": dtype.ordered}
            dtype = dtype.value_type
            column = column.cast(dtype)
        dtype = _canonical_type(dtype)
        if dtype != column.type:
            column = column.cast(dtype)
        header["type"] = str(dtype)
        feed(json.dumps(header, sort_keys=True).encode())
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if array.null_count:
            feed(np.packbits(pc.is_valid(array).to_numpy(zero_copy_only=False)).tobytes())
            array = pc.drop_null(array)
        else:
            feed(b"")
        feed(_values_bytes(array))
    return digest.hexdigest()


def _values_bytes(array: pa.Array) -> bytes:
    if pa.types.is_boolean(array.type):
        # Bit-packed booleans may carry stray bits past the end; numpy's packing does not.
        return np.packbits(array.to_numpy(zero_copy_only=False)).tobytes()
    if pa.types.is_null(array.type):
        return b""
    table = pa.table({"v": array})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def to_parquet(table: pa.Table) -> bytes:
    """The Parquet bytes of a snapshot (zstd-compressed)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def from_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def table_schema(table: pa.Table, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``[{name, type, arrow_type, nullable}]``: pandas dtype, Arrow type and
    whether the column holds missing values."""
    return [
        {"name": name, "type": str(frame.dtypes.iloc[i]),
         "arrow_type": str(column.type), "nullable": bool(column.null_count)}
        for i, (name, column) in enumerate(zip(table.column_names, table.columns))
    ]
