"""Evaluation benchmark: a full report on 100k rows, and shap per row.

Prints ``name: value`` lines. Run: ``python benchmarks/evaluation.py``.

(a) ``evaluate_model`` with every section (bootstrap CIs, slices, fairness,
    explanations, robustness with the evasion attack, operational timings) on
    a generated 100k-row binary dataset (6 numeric + 2 categorical columns)
    and a LightGBM pipeline; the time of each section alone is also printed.
(b) SHAP attributions per row: ``shipyard.evaluate.explain_rows`` against
    calling shap's ``ExactExplainer`` directly with the same model, background
    and rows (8 numeric columns, so both use exact Shapley values), and the
    largest difference between their attributions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def make_data(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(6)})
    frame["region"] = rng.choice(["north", "south", "east", "west"], size=n)
    frame["group"] = rng.choice(["a", "b"], size=n, p=[0.7, 0.3])
    logit = frame["x0"] * 1.5 - frame["x1"] + 0.5 * (frame["region"] == "north") \
        + 0.4 * (frame["group"] == "a") + rng.normal(scale=0.5, size=n)
    frame["y"] = (logit > 0).astype(int)
    return frame


def pipeline(frame: pd.DataFrame, features: list[str]):
    from lightgbm import LGBMClassifier
    from sklearn.pipeline import Pipeline

    from shipyard.train import build_preprocessor

    model = Pipeline([("prep", build_preprocessor(frame[features], features)),
                      ("model", LGBMClassifier(n_estimators=100, num_leaves=31,
                                               num_threads=1, verbose=-1))])
    return model.fit(frame[features], frame["y"])


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--explain-rows", type=int, default=50)
    args = parser.parse_args()

    import shap

    from shipyard.evaluate import evaluate_model, explain_rows

    frame = make_data(args.rows)
    features = [c for c in frame.columns if c != "y"]
    model = pipeline(frame, features)
    common = dict(target="y", task="binary", sensitive=["group"], slices=["region"])
    evaluate_model(model, frame.head(2000), **common)  # imports, numba compile: not timed

    print(f"rows: {args.rows}")
    seconds, report = timed(lambda: evaluate_model(model, frame, **common))
    print(f"full_report_seconds: {seconds:.2f}")
    print(f"full_report_roc_auc: {report.to_dict()['metrics']['roc_auc']['value']:.4f}")
    for section in ("metrics", "slices", "fairness", "explanations", "robustness", "operational"):
        sections = ("metrics",) if section == "metrics" else ("metrics", section)
        seconds, _ = timed(lambda: evaluate_model(model, frame, sections=sections, **common))
        print(f"section_{section}_seconds: {seconds:.2f}")

    numeric = [f"x{i}" for i in range(6)] + ["u0", "u1"]
    frame["u0"], frame["u1"] = frame["x2"] * 0.5, frame["x3"] - frame["x4"]
    num_model = pipeline(frame, numeric)
    background = frame[numeric].sample(50, random_state=0).reset_index(drop=True)
    rows = frame[numeric].iloc[:args.explain_rows].reset_index(drop=True)
    explain_rows(num_model, rows.head(2), background=background)  # warm-up

    ours_s, ours = timed(lambda: explain_rows(num_model, rows, background=background))

    def direct():
        fn = lambda m: num_model.predict_proba(pd.DataFrame(m, columns=numeric))[:, 1]
        masker = shap.maskers.Independent(background.to_numpy(), max_samples=len(background))
        explainer = shap.ExactExplainer(fn, masker, feature_names=numeric)
        return explainer(rows.to_numpy(), max_evals=2 ** len(numeric) + 1, silent=True)

    direct()  # warm-up
    shap_s, values = timed(direct)
    ours_matrix = np.array([[r["attributions"][c] for c in numeric] for r in ours])
    print(f"shap_rows: {len(rows)}")
    print(f"shipyard_explain_ms_per_row: {1000 * ours_s / len(rows):.2f}")
    print(f"shap_direct_ms_per_row: {1000 * shap_s / len(rows):.2f}")
    print(f"explain_overhead_ratio: {ours_s / shap_s:.3f}")
    print(f"max_attribution_difference: {np.abs(ours_matrix - values.values).max():.2e}")


if __name__ == "__main__":
    main()
