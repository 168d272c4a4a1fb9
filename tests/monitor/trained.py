"""A model trained the way users train one (``ws.train`` on a registered
dataset), and rows drawn like its training data, shifted on request."""

from __future__ import annotations

import numpy as np
import pandas as pd

PROJECT = """
name: monitored
dataset: people@latest
target: y
task: binary
seed: 3
train:
  split: {folds: 2}
  search: {kind: random, n_trials: 1}
  candidates:
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {max_iter: 500}
"""
CITIES = ["paris", "lyon", "nice", "lille"]


def true_probability(frame: pd.DataFrame) -> np.ndarray:
    logit = (0.06 * (frame["age"] - 45) + 0.04 * (frame["income"].fillna(50) - 50)
             + 0.8 * (frame["city"] == "paris") - 0.5 * (frame["sex"] == "F"))
    return 1 / (1 + np.exp(-logit.to_numpy(dtype=float)))


def people(n: int, seed: int = 0, *, age_shift: float = 0.0, cities=None,
           labels: bool = True) -> pd.DataFrame:
    """``age`` (int), ``income`` (float, 5 % missing), ``hours``, ``city``,
    ``sex``; and ``y`` drawn from :func:`true_probability`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": (rng.normal(45, 12, n) + age_shift).round().clip(18, 99).astype(np.int64),
        "income": rng.normal(50, 15, n).round(2),
        "hours": rng.gamma(4, 10, n).round(1),
        "city": rng.choice(CITIES, n, p=cities or [0.4, 0.3, 0.2, 0.1]),
        "sex": rng.choice(["F", "M"], n),
    })
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    if labels:
        frame["y"] = (rng.random(n) < true_probability(frame)).astype(np.int64)
    return frame


def train_people(ws, n: int = 3_000):
    """Register ``people@1`` and version 1 of model ``monitored`` trained on it."""
    from shipyard.project import parse_project

    ws.datasets.register("people", people(n))
    return ws.models.register("monitored", ws.train(parse_project(PROJECT)).study_run_id)


def logged_run(ws, *, dataset=None, seed: int = 0) -> str:
    """A run that saved a 4-column logistic regression the way training does
    (tag ``model.digest``, ``model/signature.json``), reading ``dataset``."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from shipyard.train import save_model

    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0,
                               random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    artifact = save_model(LogisticRegression(max_iter=200).fit(frame, y), ws.artifacts)
    with ws.start_run("train", inputs=[dataset] if dataset is not None else None) as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", {
            "inputs": [{"name": c, "dtype": "float64"} for c in frame.columns],
            "output": "classification", "classes": [0, 1]})
    return run.id
