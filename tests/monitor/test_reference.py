"""The reference profile is built at registration, kept with the version's
blobs, and skipped with a warning (never an error) when it cannot be built."""

from __future__ import annotations

import json
import logging

import datasketches  # noqa: F401  (a dev dependency: fail loudly if missing)
import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace
from shipyard.errors import MonitorError
from shipyard.monitor import Reference, reference
from shipyard.registry import REFERENCE_TAG

from .trained import logged_run, people, train_people


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = Workspace.open(tmp_path_factory.mktemp("reference") / "home")
    version = train_people(ws)
    yield ws, version
    ws.close()


def test_registration_stores_the_reference_profile(trained):
    ws, version = trained
    digest = version.tags[REFERENCE_TAG]
    document = json.loads(ws.artifacts.get_bytes(digest))
    assert digest in version.blob_digests and document["sample"] in version.blob_digests
    ref = reference(ws, version)
    assert isinstance(ref, Reference)
    data = people(3_000)
    assert (ref.rows, ref.dataset, ref.task, ref.classes) == (3_000, "people@1", "binary", [0, 1])
    assert list(ref.inputs.columns) == [c["name"] for c in version.signature["inputs"]]
    age = ref.inputs.columns["age"]
    assert (age.count, age.min, age.max) == (3_000, data["age"].min(), data["age"].max())
    assert ref.inputs.columns["income"].missing == data["income"].isna().sum()
    assert ref.inputs.columns["city"].counts == data["city"].value_counts().to_dict()
    model = version.load()
    X = data[list(ref.kinds)]
    predicted = pd.Series(model.predict(X)).value_counts()
    assert ref.prediction.columns["label"].counts == {str(k): int(v)
                                                      for k, v in predicted.items()}
    score = ref.prediction.columns["score"]
    assert score.mean == pytest.approx(model.predict_proba(X)[:, 1].mean())
    assert ref._sample is None  # read on first use
    sample = ref.sample
    assert sample.shape == (2_000, len(ref.kinds))
    assert sample.merge(X.drop_duplicates(), how="left", indicator=True)["_merge"].eq(
        "both").all()


def test_gc_keeps_the_reference_blobs(trained):
    ws, version = trained
    ws.gc(grace_seconds=0)
    document = json.loads(ws.artifacts.get_bytes(version.tags[REFERENCE_TAG]))
    assert ws.artifacts.exists(document["sample"])


def test_a_version_without_training_data_registers_with_a_warning(sqlite_workspace, caplog):
    run = logged_run(sqlite_workspace)
    with caplog.at_level(logging.WARNING, logger="shipyard.registry"):
        version = sqlite_workspace.models.register("plain", run)
    assert version.version == 1 and REFERENCE_TAG not in version.tags
    assert "records no training dataset" in caplog.text
    with pytest.raises(MonitorError, match="no reference profile"):
        reference(sqlite_workspace, version)


def test_a_model_that_cannot_score_its_data_registers_without_a_reference(sqlite_workspace,
                                                                          caplog):
    words = pd.DataFrame({f"x{i}": ["a", "b", "c"] for i in range(4)})
    data = sqlite_workspace.datasets.register("words", words)
    run = logged_run(sqlite_workspace, dataset=data)
    with caplog.at_level(logging.WARNING, logger="shipyard.registry"):
        version = sqlite_workspace.models.register("wordy", run, onnx=False)
    assert REFERENCE_TAG not in version.tags
    assert "no reference profile for the new version of wordy (from words@1)" in caplog.text


def test_a_version_registered_before_gets_its_reference_built_once(sqlite_workspace,
                                                                   monkeypatch):
    import shipyard.registry._reference as module

    rng = np.random.default_rng(0)
    data = sqlite_workspace.datasets.register(
        "numbers", pd.DataFrame(rng.normal(size=(500, 4)), columns=[f"x{i}" for i in range(4)]))
    run = logged_run(sqlite_workspace, dataset=data)
    with monkeypatch.context() as patch:  # as registered before references existed
        patch.setattr(module, "prepare_reference", lambda *a, **k: ({}, []))
        old = sqlite_workspace.models.register("legacy", run, onnx=False)
    assert REFERENCE_TAG not in old.tags
    built = []
    real = module.build_reference
    monkeypatch.setattr(module, "build_reference", lambda *a, **k: built.append(1) or real(*a, **k))
    ref = reference(sqlite_workspace, "legacy@1")
    assert ref.rows == 500 and ref.dataset == "numbers@1" and built == [1]
    now = sqlite_workspace.models.get("legacy@1")
    assert now.tags[REFERENCE_TAG] == ref.digest and ref.digest in now.blob_digests
    assert reference(sqlite_workspace, now).digest == ref.digest and built == [1]
    entries = [e for e in sqlite_workspace.audit.entries() if e.action == "model.reference"]
    assert len(entries) == 1 and entries[0].details["version"] == 1
