"""The reference profile of a model version, built once when it is registered
(docs/monitoring.md §1): what the model saw in training and what it answered
there, the baseline every production window is compared with.

One JSON blob (format :data:`FORMAT`)::

    inputs           FrameSketch of the training rows' signature inputs
    prediction       FrameSketch of {"label": predicted labels (classification)
                     or values (regression), "score": positive-class
                     probability (binary) or largest probability (multiclass)}
    sample           digest of a Parquet blob: <= 2,000 seeded random training
                     rows (inputs only), for the multivariate tests
    rows             training rows sketched; prediction_rows: rows scored
                     (a seeded sample of at most 200,000)
    kinds            {column: numeric | categorical | datetime | text}
    task, classes    from the signature's output
    dataset          "adult@1"; created_at: epoch seconds
    labelled         the labelled rows the performance estimators (CBPE's
                     calibration, DLE) are fitted on, chosen now so that no
                     check reads the training data: {"digest" of a Parquet
                     blob (inputs and target of <= 20,000 seeded rows),
                     "rows", "target", "source", "dataset"}; source
                     "test_split" (the training run's held-out test rows,
                     the split rebuilt from its spec.json and checked
                     against its split.digest; also "split_digest") or
                     "training" (every training row: in-sample, so
                     over-confident models look calibrated; "why" says why
                     no held-out rows); {"skipped": why} without a target

The version's tag :data:`REFERENCE_TAG` names the blob, and its blobs are
listed among the version's blobs so ``gc`` keeps them. The monitor stores the
estimators it fits on the labelled rows, once, as another blob tagged
:data:`PERFORMANCE_TAG` (:func:`attach_reference` with ``performance``). Building it is skipped,
with a logged warning and no error, when the version records no training
dataset, the data lacks a signature column, ``datasketches`` is not
installed, or the model cannot score the rows.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shipyard.errors import ShipyardError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard import Workspace
    from shipyard.registry._records import ModelVersion

log = logging.getLogger("shipyard.registry")
REFERENCE_TAG = "reference.digest"
#: The version's fitted performance estimators (written by the monitor).
PERFORMANCE_TAG = "performance.digest"
FORMAT = "shipyard.reference/1"
#: Training rows kept as the multivariate tests' reference sample.
SAMPLE_ROWS = 2_000
#: Labelled rows kept for the performance estimators, at most.
LABELLED_ROWS = 20_000
#: Training rows scored for the prediction profile (a seeded sample beyond).
PREDICTION_ROWS = 200_000
_CHUNK = 50_000


def input_kinds(signature: Mapping[str, Any] | None) -> dict[str, str]:
    """``{column: kind}`` of a signature's inputs (numeric, categorical,
    datetime or text; booleans and strings are categorical).

    >>> input_kinds({"inputs": [{"name": "age", "dtype": "int64", "kind": "numeric"},
    ...                         {"name": "ok", "dtype": "bool"}]})
    {'age': 'numeric', 'ok': 'categorical'}
    """
    kinds = {}
    for entry in (signature or {}).get("inputs", []):
        if not isinstance(entry, Mapping):
            continue
        dtype = str(entry.get("dtype", "object"))
        kind = entry.get("kind")
        if kind not in ("numeric", "categorical", "datetime", "text"):
            kind = ("numeric" if dtype.startswith(("int", "Int", "uint", "UInt", "float",
                                                  "Float")) and dtype != "bool"
                    else "datetime" if dtype.startswith("datetime") else "categorical")
        kinds[str(entry["name"])] = kind
    return kinds


def task_of(signature: Mapping[str, Any] | None) -> tuple[str, list | None, bool]:
    """``(task, classes, has_probabilities)`` from a signature's output:
    ``binary``, ``multiclass`` or ``regression``.

    >>> task_of({"output": {"task": "binary", "kind": "probabilities", "classes": [0, 1]}})
    ('binary', [0, 1], True)
    >>> task_of({"output": "classification", "classes": ["a", "b", "c"]})
    ('multiclass', ['a', 'b', 'c'], True)
    """
    signature = signature or {}
    output = signature.get("output") or {}
    if not isinstance(output, Mapping):  # an older signature: the task as text
        output = {"task": str(output), "classes": signature.get("classes")}
    classes = output.get("classes")
    task = str(output.get("task") or ("regression" if classes is None else "classification"))
    if task in ("classification", "classifier"):
        task = "binary" if classes is not None and len(classes) <= 2 else "multiclass"
    if task not in ("binary", "multiclass", "regression"):
        task = "regression" if classes is None else (
            "binary" if len(classes) <= 2 else "multiclass")
    has_proba = task != "regression" and output.get("kind") != "label"
    return task, list(classes) if classes is not None else None, has_proba


def prediction_kinds(task: str) -> dict[str, str]:
    """Kinds of the prediction profile's columns for a task."""
    if task == "regression":
        return {"label": "numeric"}
    return {"label": "categorical", "score": "numeric"}


def score_frame(model: Any, frame: pd.DataFrame, task: str) -> pd.DataFrame:
    """The prediction profile's columns for ``frame``: ``label`` and, for
    classifiers with probabilities, ``score``."""
    import numpy as np
    import pandas as pd

    labels = np.asarray(model.predict(frame))
    out = pd.DataFrame({"label": labels})
    if task != "regression":
        score = np.full(len(frame), np.nan)
        if hasattr(model, "predict_proba"):
            proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
            score = proba[:, -1] if proba.shape[1] == 2 else proba.max(axis=1)
        out["score"] = score
    return out


def held_out_rows(ws: Workspace, run_id: str | None, frame: pd.DataFrame, dataset_ref: str
                  ) -> tuple[Any, dict[str, Any]]:
    """Positions in ``frame`` (the whole dataset ``dataset_ref``) of the test
    rows that run ``run_id``'s training held out, and a note of them.

    The split is rebuilt from the study run's ``spec.json`` and accepted only
    when its digest is the run's ``split.digest``.

    Returns
    -------
    tuple
        ``(positions, {"source": "test_split", "split_digest", "run_id"})``,
        or ``(None, {"why": ...})`` when there are none to be had.
    """
    from shipyard.train import SplitSpec, make_split

    if run_id is None:
        return None, {"why": "no training run given"}
    try:
        run = ws.runs.get(run_id)
        while run.tags.get("kind") != "study" and run.parent_id is not None:
            run = ws.runs.get(run.parent_id)
        spec = json.loads(ws.runs.load_artifact(run.id, "spec.json"))
    except (ShipyardError, ValueError):
        return None, {"why": f"run {run_id[:12]} is not a `shipyard train` run (no spec.json)"}
    pinned = spec.get("dataset") or {}
    if f"{pinned.get('name')}@{pinned.get('version')}" != dataset_ref:
        return None, {"why": f"run {run_id[:12]} trained on another dataset"}
    split = make_split(frame, spec["target"], SplitSpec.model_validate(spec["train"]["split"]),
                       int(spec.get("seed", 0)))
    if split.digest != run.tags.get("split.digest") or not len(split.test):
        return None, {"why": f"the split of run {run.id[:12]} could not be rebuilt"}
    return split.test, {"source": "test_split", "split_digest": split.digest, "run_id": run.id}


def labelled_rows(ws: Workspace, frame: pd.DataFrame, signature: Mapping[str, Any] | None,
                  dataset_ref: str, *, run_id: str | None = None, seed: int = 0
                  ) -> dict[str, Any]:
    """Store the labelled rows of ``frame`` the performance estimators will
    be fitted on (the held-out ones when :func:`held_out_rows` finds them,
    else every row; at most :data:`LABELLED_ROWS`, seeded); return the
    reference document's ``labelled`` entry (see the module docstring)."""
    output = (signature or {}).get("output")
    target = output.get("target") if isinstance(output, Mapping) else None
    if not target or target not in frame.columns:
        return {"skipped": f"{dataset_ref} has no target column named by the signature"}
    try:
        positions, note = held_out_rows(ws, run_id, frame, dataset_ref)
    except Exception as exc:  # noqa: BLE001 -- held-out rows are a preference, not a need
        positions, note = None, {"why": f"the split could not be rebuilt: {exc}"[:300]}
    if positions is None:
        note = {"source": "training", **note}
        rows = frame
    else:
        rows = frame.iloc[positions]
    rows = rows.loc[rows[target].notna(), [*input_kinds(signature), target]]
    if len(rows) > LABELLED_ROWS:
        rows = rows.sample(LABELLED_ROWS, random_state=seed + 1)
    buffer = io.BytesIO()
    rows.reset_index(drop=True).to_parquet(buffer, index=False)
    return {"digest": ws.artifacts.put_bytes(buffer.getvalue()), "rows": len(rows),
            "target": target, "dataset": dataset_ref, **note}


def build_reference(ws: Workspace, model: Any, signature: Mapping[str, Any] | None,
                    dataset_ref: str, *, seed: int = 0, run_id: str | None = None
                    ) -> dict[str, Any]:
    """Sketch ``dataset_ref``'s rows and ``model``'s answers on them; store the
    sample and labelled-rows blobs (held-out rows of ``run_id``'s training
    preferred, see :func:`labelled_rows`); return the reference document (not
    yet stored).

    Raises
    ------
    ShipyardError
        The data cannot be read or lacks a signature column
        (:class:`~shipyard.errors.DataError`), datasketches is missing
        (:class:`~shipyard.errors.ConfigError`).
    Exception
        Whatever the model raises when it cannot score the rows.
    """
    from shipyard.data import FrameSketch
    from shipyard.errors import DataError

    kinds = input_kinds(signature)
    if not kinds:
        raise DataError("the signature lists no input columns")
    task, classes, _ = task_of(signature)
    data = ws.datasets.load(dataset_ref)
    missing = [c for c in kinds if c not in data.columns]
    if missing:
        raise DataError(f"{dataset_ref} lacks the signature column(s) "
                        f"{', '.join(map(repr, missing))}")
    labelled = labelled_rows(ws, data, signature, dataset_ref, run_id=run_id, seed=seed)
    data = data[list(kinds)]
    inputs = FrameSketch(kinds)
    for lo in range(0, len(data), _CHUNK):
        inputs.update(data.iloc[lo:lo + _CHUNK])
    scored = data.sample(PREDICTION_ROWS, random_state=seed) if len(data) > PREDICTION_ROWS \
        else data
    prediction = FrameSketch(prediction_kinds(task))
    for lo in range(0, len(scored), _CHUNK):
        prediction.update(score_frame(model, scored.iloc[lo:lo + _CHUNK], task))
    sample = data.sample(SAMPLE_ROWS, random_state=seed) if len(data) > SAMPLE_ROWS else data
    buffer = io.BytesIO()
    sample.reset_index(drop=True).to_parquet(buffer, index=False)
    return {"format": FORMAT, "inputs": inputs.to_dict(), "prediction": prediction.to_dict(),
            "sample": ws.artifacts.put_bytes(buffer.getvalue()), "rows": len(data),
            "prediction_rows": len(scored), "sample_rows": len(sample), "kinds": kinds,
            "task": task, "classes": classes, "dataset": dataset_ref, "labelled": labelled,
            "created_at": time.time()}


def store_reference(ws: Workspace, document: Mapping[str, Any]) -> str:
    """Store a reference document as a JSON blob; return its digest."""
    return ws.artifacts.put_bytes(json.dumps(document, allow_nan=False).encode())


def reference_blobs(ws: Workspace, digest: str) -> list[str]:
    """The blobs of the stored reference ``digest``: itself, its sample and
    its labelled rows."""
    document = json.loads(ws.artifacts.get_bytes(digest))
    labelled = (document.get("labelled") or {}).get("digest")
    return [digest, *(d for d in (document.get("sample"), labelled) if d)]


def prepare_reference(ws: Workspace, model: Callable[[], Any], signature: Mapping[str, Any] | None,
                      dataset_ref: str | None, *, tags: Mapping[str, str] | None = None,
                      what: str = "the new version", run_id: str | None = None
                      ) -> tuple[dict[str, str], list[str]]:
    """Build and store the reference of a version about to be registered.

    ``model`` is called to get the model (loaded only when needed);
    ``run_id`` is the run it comes from (its held-out test rows become the
    labelled rows; without it, the training rows do). A
    :data:`REFERENCE_TAG` already in ``tags`` whose blob exists (a version
    copied from another workspace) is kept rather than rebuilt.

    Returns
    -------
    tuple
        ``(tags, blob digests)`` to record with the version; both empty when
        skipped (a warning is logged).
    """
    given = (tags or {}).get(REFERENCE_TAG)
    if given and ws.artifacts.exists(given):
        try:
            blobs = reference_blobs(ws, given)
            if all(ws.artifacts.exists(d) for d in blobs):
                return {REFERENCE_TAG: given}, blobs
        except (ValueError, ShipyardError) as exc:
            log.warning("tag %s=%s is not a usable reference (%s); building a new one",
                        REFERENCE_TAG, given[:12], exc)
    if dataset_ref is None:
        log.warning("%s records no training dataset: no reference profile is stored, so "
                    "drift monitoring cannot compare it with production", what)
        return {}, []
    try:
        document = build_reference(ws, model(), signature, dataset_ref, run_id=run_id)
    except Exception as exc:  # noqa: BLE001 -- a missing profile must not stop registration
        log.warning("no reference profile for %s (from %s): %s", what, dataset_ref,
                    str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        return {}, []
    digest = store_reference(ws, document)
    labelled = document["labelled"].get("digest")
    return {REFERENCE_TAG: digest}, [digest, document["sample"], *([labelled] if labelled else [])]


def attach_reference(ws: Workspace, version: ModelVersion, *, actor: str | None = None,
                     performance: Mapping[str, Any] | None = None,
                     replaces: str | None = None) -> ModelVersion:
    """Store what monitoring compares ``version`` with, when it lacks it.

    Without ``performance``: build and store the reference of a version
    registered without one (the only case that reads its training data after
    registration); tag it :data:`REFERENCE_TAG`, list its blobs, and write an
    audit entry ``model.reference``. With ``performance`` (the monitor's
    fitted estimators, a JSON document): store it as a blob tagged
    :data:`PERFORMANCE_TAG`, audit entry ``model.performance``. Either is
    written once: a version that has it (another process may have got there
    first) is returned as recorded.

    Returns
    -------
    ModelVersion
        The version as now recorded (without the tag when the reference was
        skipped: see :func:`prepare_reference`).
    """
    if performance is not None:
        if version.tags.get(PERFORMANCE_TAG) not in (None, "", replaces):
            return version
        digest = ws.artifacts.put_bytes(json.dumps(performance, allow_nan=False).encode())
        return _record_tags(ws, version, {PERFORMANCE_TAG: digest}, [digest],
                            action="model.performance", actor=actor, replaces=replaces,
                            details={"version": version.version, "performance": digest,
                                     "source": performance.get("source"),
                                     "dataset_version": performance.get("dataset"),
                                     **({"replaces": replaces} if replaces else {})})
    if version.tags.get(REFERENCE_TAG):
        return version
    dataset_ref = version.dataset_version
    if dataset_ref is None:
        dataset_ref = next(iter(ws.runs.inputs(version.run_id)), None)
    tags, blobs = prepare_reference(ws, version.load, version.signature, dataset_ref,
                                    what=version.ref, run_id=version.run_id)
    if not tags:
        return version
    return _record_tags(ws, version, tags, blobs, action="model.reference", actor=actor,
                        details={"version": version.version, "reference": tags[REFERENCE_TAG],
                                 "dataset_version": dataset_ref})


def _record_tags(ws: Workspace, version: ModelVersion, tags: Mapping[str, str],
                 blobs: list[str], *, action: str, details: Mapping[str, Any],
                 actor: str | None, replaces: str | None = None) -> ModelVersion:
    """Add ``tags`` (unless the version has them already, with a value other
    than ``replaces``) and ``blobs`` to ``version``, with an audit entry, in
    one transaction."""
    from sqlalchemy import select

    from shipyard.security import resolve_actor
    from shipyard.store.tables import (
        ModelVersionBlobRow,
        ModelVersionRow,
        RegisteredModelRow,
    )

    actor = resolve_actor(actor)

    def write(session):
        ws.audit.lock(session)
        row = session.execute(
            select(ModelVersionRow).join(RegisteredModelRow,
                                         RegisteredModelRow.id == ModelVersionRow.model_id)
            .where(RegisteredModelRow.name == version.name,
                   ModelVersionRow.version == version.version)).scalar_one()
        if any((row.tags or {}).get(tag) not in (None, "", replaces) for tag in tags):
            return  # another process got there first
        row.tags = {**(row.tags or {}), **tags}
        have = set(session.execute(select(ModelVersionBlobRow.digest)
                                   .where(ModelVersionBlobRow.version_id == row.id)).scalars())
        session.add_all(ModelVersionBlobRow(version_id=row.id, digest=d)
                        for d in dict.fromkeys(blobs) if d not in have)
        session.flush()
        ws.audit.append(session, actor=actor, action=action, object_type="model",
                        object_id=version.name, details=dict(details))

    ws.db.retry(write, what=f"store the {action.split('.')[-1]} of {version.ref}",
                conflicts=True)
    return ws.models.get(version.ref)
