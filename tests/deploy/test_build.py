"""``shipyard build``: a Dockerfile, pinned requirements, a KServe manifest
and a model bundle that opens as a workspace and serves the model."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from .conftest import toy_frame


@pytest.fixture(scope="module")
def built(served, tmp_path_factory, pytestconfig):
    from shipyard.cli import app

    out = tmp_path_factory.mktemp("build") / "ctx"
    mp = pytest.MonkeyPatch()
    mp.setenv("SHIPYARD_HOME", str(served[0].settings.home))
    result = CliRunner().invoke(app, ["build", "toy@champion", "--out", str(out)])
    mp.undo()
    assert result.exit_code == 0, result.output
    return out


def instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    logical = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in logical.splitlines() if line.strip() and not line.startswith("#")]


def test_dockerfile_parses_into_instructions(built):
    steps = instructions((built / "Dockerfile").read_text())
    assert steps[0] == ("FROM", "python:3.11-slim")
    kinds = [k for k, _ in steps]
    assert ("EXPOSE", "8080") in steps and kinds[-1] == "CMD"
    assert set(kinds) <= {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE",
                          "HEALTHCHECK", "CMD"}
    cmd = steps[-1][1]
    assert '"serve", "toy@champion"' in cmd and '"8080"' in cmd


def test_requirements_are_pinned(built):
    lines = (built / "requirements.txt").read_text().split()
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*==[\w.+!-]+", line) for line in lines), lines
    names = {line.split("==")[0] for line in lines}
    assert {"fastapi", "uvicorn", "scikit-learn", "skops", "pandas"} <= names
    from importlib.metadata import version

    assert f"fastapi=={version('fastapi')}" in lines


def test_kserve_manifest(built):
    doc = yaml.safe_load((built / "kserve.yaml").read_text())
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    predictor = doc["spec"]["predictor"]
    assert predictor["protocolVersion"] == "v2"
    container = predictor["containers"][0]
    assert container["image"] == "shipyard-toy:1"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_bundle_opens_as_a_workspace_and_loads_the_model(served, built):
    from shipyard import Workspace

    source = served[0].models.get("toy@champion")
    bundle = Workspace.open(built / "bundle")
    try:
        copy = bundle.models.get("toy@champion")
        assert copy.artifact_digest == source.artifact_digest
        assert copy.signature == source.signature and copy.tags["bundle.source"] == "toy@1"
        rows = toy_frame(50, seed=9).drop(columns="y")
        np.testing.assert_allclose(copy.load().predict_proba(rows),
                                   source.load().predict_proba(rows))
    finally:
        bundle.close()
    assert (built / "app" / "shipyard" / "serve" / "_app.py").is_file()


def test_refuses_a_non_empty_folder(served, built):
    from shipyard.errors import ConfigError
    from shipyard.deploy._build import build_context

    with pytest.raises(ConfigError, match="not empty"):
        build_context(served[0], "toy@champion", built)
