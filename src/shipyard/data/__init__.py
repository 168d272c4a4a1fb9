"""Datasets: read from sources, validate, version, profile and compare.

Example (needs a workspace with data and a model)::

    import shipyard
    ws = shipyard.Workspace.open()
    v = ws.datasets.register("adult", "adult.csv",
                             expectations=[{"column": "age", "range": {"min": 0, "max": 120}}])
    ws.datasets.load("adult@latest")

Sources: :class:`CsvSource`, :class:`ParquetSource`, :class:`JsonSource`,
:class:`JsonlSource`, :class:`DataFrameSource`, :class:`SqlSource`,
:class:`HttpJsonSource`; a path, URL or DataFrame is turned into one by
:func:`as_source`.
"""

from shipyard.data._datasets import (DatasetSummary, Datasets, DatasetVersion, check_name,
                                     parse_ref)
from shipyard.data._diff import ColumnChange, DatasetDiff, diff_versions
from shipyard.data._jsonable import jsonable
from shipyard.data._expectations import (CheckResult, Expectation, ValidationReport,
                                         load_expectations, parse_expectations, validate)
from shipyard.data._profile import profile_column, profile_frame
from shipyard.data._sketch import ColumnSketch, FrameSketch
from shipyard.data._snapshot import content_hash
from shipyard.data._sources import (CsvSource, DataFrameSource, FileSource, HttpJsonSource,
                                    JsonlSource, JsonSource, ParquetSource, Source, SqlSource,
                                    as_source)

__all__ = [
    "CheckResult", "ColumnChange", "ColumnSketch", "CsvSource", "DataFrameSource", "DatasetDiff",
    "DatasetSummary", "DatasetVersion", "Datasets", "Expectation", "FileSource", "FrameSketch",
    "HttpJsonSource", "JsonSource", "JsonlSource", "ParquetSource", "Source", "SqlSource",
    "ValidationReport", "as_source", "check_name", "content_hash", "diff_versions", "jsonable",
    "load_expectations", "parse_expectations", "parse_ref", "profile_column", "profile_frame",
    "validate",
]
