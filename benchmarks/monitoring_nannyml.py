"""Run by NannyML's interpreter for ``benchmarks/monitoring.py``: export
NannyML's shipped datasets to Parquet and its CBPE (classification) and DLE
(regression) per-chunk estimates to JSON, so that Shipyard's estimates on the
same rows can be compared in the main environment.

Usage: ``<nannyml python> benchmarks/monitoring_nannyml.py OUT_DIR [CHUNK_SIZE]``;
writes ``OUT_DIR/<dataset>/{reference,analysis}.parquet`` (analysis with its
targets joined) and ``OUT_DIR/<dataset>/nannyml.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no telemetry from the benchmark

import pandas as pd

# NannyML 0.13's DLE cannot reshape pandas 3's Arrow-backed strings.
pd.set_option("future.infer_string", False)

import nannyml as nml

#: name: (loader, target, probability columns (one: binary), prediction, metrics)
DATASETS = {
    "car_loan": ("load_synthetic_car_loan_dataset", "repaid", "y_pred_proba", "y_pred",
                 ["roc_auc", "accuracy"]),
    "binary": ("load_synthetic_binary_classification_dataset", "work_home_actual",
               "y_pred_proba", "y_pred", ["roc_auc", "accuracy"]),
    "multiclass": ("load_synthetic_multiclass_classification_dataset", "y_true",
                   {"prepaid_card": "y_pred_proba_prepaid_card",
                    "highstreet_card": "y_pred_proba_highstreet_card",
                    "upmarket_card": "y_pred_proba_upmarket_card"}, "y_pred",
                   ["roc_auc", "accuracy"]),
    "car_price": ("load_synthetic_car_price_dataset", "y_true", None, "y_pred",
                  ["mae", "rmse"]),
}
FEATURES = {"car_price": ["car_age", "km_driven", "price_new", "accident_count",
                          "door_count", "fuel", "transmission"]}


def recalibrated(estimator, proba) -> list[str]:
    """The classes NannyML recalibrates (binary: ``"1"`` or none)."""
    if proba is None:
        return []
    if isinstance(proba, str):
        return ["1"] if estimator.needs_calibration else []
    from nannyml.calibration import NoopCalibrator

    return sorted(c for c, cal in estimator._calibrators.items()
                  if not isinstance(cal, NoopCalibrator))


def main() -> None:
    out, chunk_size = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 5_000
    for name, (loader, target, proba, pred, metrics) in DATASETS.items():
        reference, analysis, targets = getattr(nml, loader)()
        analysis = analysis.merge(targets, on="id")
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        reference.to_parquet(folder / "reference.parquet", index=False)
        analysis.to_parquet(folder / "analysis.parquet", index=False)
        start = time.perf_counter()
        if proba is None:
            features = FEATURES[name]
            estimator = nml.DLE(feature_column_names=features, y_pred=pred, y_true=target,
                                metrics=metrics, chunk_size=chunk_size)
        else:
            estimator = nml.CBPE(y_pred_proba=proba, y_pred=pred, y_true=target,
                                 metrics=metrics, chunk_size=chunk_size,
                                 problem_type="classification_binary"
                                 if isinstance(proba, str) else "classification_multiclass")
            features = []
        estimator.fit(reference)
        frame = estimator.estimate(analysis).filter(period="analysis").to_df()
        seconds = time.perf_counter() - start
        chunks = []
        for _, row in frame.iterrows():
            chunks.append({"start": int(row[("chunk", "start_index")]),
                           "end": int(row[("chunk", "end_index")]),
                           **{m: {"estimated": float(row[(m, "value")]),
                                  "realized": float(row[(m, "realized")])} for m in metrics}})
        info = {"version": nml.__version__, "seconds": seconds, "target": target,
                "proba": proba, "pred": pred, "metrics": metrics, "features": features,
                "chunk_size": chunk_size, "chunks": chunks,
                "recalibrated": recalibrated(estimator, proba)}
        (folder / "nannyml.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
