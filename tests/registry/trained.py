"""Runs that produced a model, logged the way Shipyard's training does:
tag ``model.digest``, artifact ``model/signature.json``, metrics, input;
and row counts of the registry tables, to show a refusal changed nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from shipyard.store.tables import (AuditEntryRow, ModelAliasEventRow, ModelAliasRow,
                                    ModelVersionBlobRow, ModelVersionRow, RegisteredModelRow)

REGISTRY_TABLES = (RegisteredModelRow, ModelVersionRow, ModelVersionBlobRow, ModelAliasRow,
                   ModelAliasEventRow, AuditEntryRow)


@dataclass
class TrainedRun:
    run_id: str
    model: Any
    X: pd.DataFrame
    digest: str
    digests: list[str]
    accuracy: float


def train_run(ws, *, seed: int = 0, dataset: Any = None, digest_tag: bool = True,
              signature: bool = True) -> TrainedRun:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from shipyard.train import save_model

    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0,
                               random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(4)])
    model = LogisticRegression(max_iter=200).fit(frame, y)
    artifact = save_model(model, ws.artifacts)
    accuracy = float(model.score(frame, y))
    with ws.start_run("train", inputs=[dataset] if dataset is not None else None) as run:
        run.log_metric("accuracy", accuracy)
        if digest_tag:
            run.set_tag("model.digest", artifact.digest)
        if signature:
            run.log_dict("model/signature.json", {
                "inputs": [{"name": c, "dtype": "float64"} for c in frame.columns],
                "output": "classification", "classes": [0, 1]})
    return TrainedRun(run.id, model, frame, artifact.digest, artifact.digests, accuracy)


def row_counts(ws) -> dict[str, int]:
    with ws.db.read() as s:
        return {t.__tablename__: s.execute(select(func.count()).select_from(t)).scalar()
                for t in REGISTRY_TABLES}
