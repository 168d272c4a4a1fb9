"""What a model's signature says about its inputs, and checking a frame
against it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from shipyard.errors import DataError


def signature_inputs(signature: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """The signature's inputs as ``[{"name", "dtype"?, "kind"?}]``; plain column names
    are accepted too. None when there is no signature or it lists no inputs.

    >>> signature_inputs({"inputs": ["a", {"name": "b", "dtype": "int64"}]})
    [{'name': 'a'}, {'name': 'b', 'dtype': 'int64'}]
    """
    if not signature or not signature.get("inputs"):
        return None
    out = []
    for item in signature["inputs"]:
        if isinstance(item, Mapping):
            out.append({k: v for k, v in item.items() if k in ("name", "dtype", "kind")})
        else:
            out.append({"name": str(item)})
    return out


def normalized_signature(signature: Mapping[str, Any] | None,
                         columns: list[str]) -> dict[str, Any]:
    """``signature`` with every input as a ``{"name", ...}`` object (the
    form training records); built from ``columns`` when there is none.

    >>> normalized_signature({"inputs": ["a"]}, ["a"])
    {'inputs': [{'name': 'a'}]}
    """
    out = dict(signature or {})
    if signature_inputs(signature) is None:
        out["inputs"] = [{"name": c} for c in columns]
    else:
        out["inputs"] = [dict(i) if isinstance(i, Mapping) else {"name": str(i)}
                         for i in signature["inputs"]]
    return out


def input_columns(signature: Mapping[str, Any] | None) -> list[str] | None:
    """The names of the model's input columns, in order (None if unknown)."""
    inputs = signature_inputs(signature)
    return None if inputs is None else [i["name"] for i in inputs]


def signature_output(signature: Mapping[str, Any] | None) -> dict[str, Any]:
    """The signature's output description: ``{"target"?, "task"?, "kind"?,
    "classes"?}``, from either the trainer's ``{"output": {...}}`` form or a
    flat ``{"output": "classification", "classes": [...]}`` one."""
    if not signature:
        return {}
    raw = signature.get("output")
    out = dict(raw) if isinstance(raw, Mapping) else ({"task": raw} if raw else {})
    for key in ("target", "task", "classes"):
        if key in signature and key not in out:
            out[key] = signature[key]
    return out


def dtype_family(dtype: Any) -> str:
    """``numeric``, ``bool``, ``datetime`` or ``text`` (strings, categories,
    objects).

    >>> dtype_family("int64"), dtype_family("float32"), dtype_family("category")
    ('numeric', 'numeric', 'text')
    """
    try:
        dtype = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        return "text"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def check_schema(frame: pd.DataFrame, signature: Mapping[str, Any] | None,
                 where: str = "the data") -> list[str] | None:
    """Check ``frame`` holds every input column of ``signature``, each of the
    recorded dtype family; return the input column names.

    Raises
    ------
    DataError
        A column is missing, or holds another kind of values than the model
        was trained on.
    """
    inputs = signature_inputs(signature)
    if inputs is None:
        return None
    missing = [i["name"] for i in inputs if i["name"] not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks the model's input column(s) "
                        f"{', '.join(map(repr, missing))}",
                        hint=f"the model takes {', '.join(i['name'] for i in inputs)}")
    wrong = []
    for item in inputs:
        if "dtype" not in item:
            continue
        want, got = dtype_family(item["dtype"]), dtype_family(frame[item["name"]].dtype)
        # bool values are valid numbers; an all-missing column reads as object.
        if want != got and not (want == "numeric" and got == "bool") \
                and not frame[item["name"]].isna().all():
            wrong.append(f"{item['name']!r} is {frame[item['name']].dtype} ({got}), the model "
                         f"was trained on {item['dtype']} ({want})")
    if wrong:
        raise DataError(f"{where} does not match the model's signature: " + "; ".join(wrong),
                        hint="evaluate on data with the columns' training types")
    return [i["name"] for i in inputs]
