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

from shipyard.lazy import lazy_exports

# Names resolve lazily: a caller that only sketches a Parquet file (the
# monitor's drift path) does not load the dataset store, SQLAlchemy or the
# expectation engine.
_EXPORTS = {
    **dict.fromkeys(["DatasetSummary", "Datasets", "DatasetVersion", "check_name", "parse_ref"],
                    "shipyard.data._datasets"),
    **dict.fromkeys(["ColumnChange", "DatasetDiff", "diff_versions"], "shipyard.data._diff"),
    "jsonable": "shipyard.data._jsonable",
    **dict.fromkeys(["CheckResult", "Expectation", "ValidationReport", "load_expectations",
                     "parse_expectations", "validate"], "shipyard.data._expectations"),
    **dict.fromkeys(["profile_column", "profile_frame"], "shipyard.data._profile"),
    **dict.fromkeys(["ColumnSketch", "FrameSketch"], "shipyard.data._sketch"),
    "content_hash": "shipyard.data._snapshot",
    **dict.fromkeys(["CsvSource", "DataFrameSource", "FileSource", "HttpJsonSource",
                     "JsonlSource", "JsonSource", "ParquetSource", "Source", "SqlSource",
                     "as_source"], "shipyard.data._sources"),
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
