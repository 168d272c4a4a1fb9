"""A container build context for one model version: ``Dockerfile``,
``requirements.txt`` pinned to the versions installed here, the model bundle
(a workspace holding only that version, its blobs and signature), Shipyard's
own source, and a KServe ``InferenceService`` manifest. No image is built.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import ConfigError

if TYPE_CHECKING:
    from shipyard import Workspace

BASE_IMAGE = "python:3.11-slim"
PORT = 8080
#: Where the bundle workspace lives inside the image.
MODEL_HOME = "/models"
#: Distributions serving needs beyond Shipyard's own dependencies, when present.
SERVING_EXTRAS = ("scikit-learn", "scipy", "skops", "lightgbm", "safetensors", "fastapi",
                  "starlette", "uvicorn", "uvloop", "httptools", "orjson", "prometheus-client")
#: What a model format needs on top.
FORMAT_EXTRAS = {"torch": ("torch",), "onnx": ("onnx", "onnxruntime"), "xgboost": ("xgboost",)}
#: Pulled in by Shipyard's package metadata but not needed to serve.
NOT_FOR_SERVING = frozenset({"optuna", "imbalanced-learn", "pandera", "ray", "shap", "fairlearn",
                             "matplotlib", "jinja2", "psycopg"})


@dataclass(frozen=True)
class BuildContext:
    """What :func:`build_context` wrote."""

    path: Path
    model: str
    image: str
    requirements: tuple[str, ...]


def build_context(ws: Workspace, ref: str, out: str | Path, *, image: str | None = None
                  ) -> BuildContext:
    """Write the build context of ``ref`` to ``out`` (created; must be empty).

    Raises
    ------
    NotFoundError
        No such model.
    ConfigError
        ``out`` exists and is not empty.
    """
    from shipyard.registry import parse_model_ref

    version = ws.models.get(ref)
    name, selector = parse_model_ref(ref)
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path} is not empty", hint="pass --out with a new folder")
    path.mkdir(parents=True, exist_ok=True)
    alias = selector if isinstance(selector, str) and selector != "latest" else None
    served = export_bundle(ws, version, path / "bundle", alias=alias)
    shutil.copytree(Path(__file__).resolve().parents[1], path / "app" / "shipyard",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    requirements = pinned_requirements(version)
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    tag = image or f"shipyard-{_image_name(name)}:{version.version}"
    (path / "Dockerfile").write_text(dockerfile(served))
    (path / "kserve.yaml").write_text(kserve_manifest(name, tag))
    (path / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return BuildContext(path, version.ref, tag, tuple(requirements))


def export_bundle(ws: Workspace, version, home: str | Path, *, alias: str | None = None) -> str:
    """Copy ``version`` (every blob, signature, tags) into a new workspace at
    ``home`` as version 1 of the same name; return the ref to serve there."""
    from shipyard.registry import DIGEST_TAG

    bundle = type(ws).open(home)
    try:
        for digest in version.blob_digests:
            bundle.artifacts.put_bytes(ws.artifacts.get_bytes(digest))
        with bundle.runs.start("bundle", name=f"export of {version.ref}",
                               tags={DIGEST_TAG: version.artifact_digest}) as run:
            pass
        tags = {**version.tags, "bundle.source": version.ref}
        copy = bundle.models.register(version.name, run.id, artifact_digest=version.artifact_digest,
                                      signature=version.signature, tags=tags,
                                      description=version.description,
                                      reason=f"exported from {version.ref}")
        if alias is not None:
            bundle.models.set_alias(version.name, alias, copy.version,
                                    reason=f"as in the source workspace ({version.ref})")
            return f"{version.name}@{alias}"
        return copy.ref
    finally:
        bundle.close()


def pinned_requirements(version=None) -> list[str]:
    """``name==version`` for what serving needs, as installed now."""
    names: dict[str, None] = {}
    try:
        for requirement in metadata.requires("shipyard") or []:
            spec, _, marker = requirement.partition(";")
            if marker and "extra" in marker and not re.search(r"extra\s*==\s*['\"](serve|train)",
                                                              marker):
                continue
            names[re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0]] = None
    except metadata.PackageNotFoundError:
        pass
    for name in SERVING_EXTRAS:
        names[name] = None
    if version is not None:
        manifest_format = _format(version)
        for name in FORMAT_EXTRAS.get(manifest_format, ()):
            names[name] = None
        if (version.tags or {}).get("onnx") == "converted":
            names["onnxruntime"] = None
    out = {}
    for name in names:
        key = _canonical(name)
        if key == "shipyard" or key in NOT_FOR_SERVING:
            continue
        try:
            out[key] = f"{key}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return sorted(out.values())


def dockerfile(ref: str) -> str:
    return f"""\
# Built by `shipyard build`: serves {ref} on port {PORT}.
FROM {BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \\
    PYTHONPATH=/app SHIPYARD_HOME={MODEL_HOME}
RUN useradd --create-home --uid 10001 shipyard
WORKDIR /app
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt
COPY app/ /app/
COPY --chown=shipyard bundle/ {MODEL_HOME}/
USER shipyard
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; \\
urllib.request.urlopen('http://127.0.0.1:{PORT}/healthz')"
# API keys are left to the cluster (KServe ingress); to require Shipyard keys,
# drop --no-auth and create them in {MODEL_HOME} with `shipyard keys create`.
CMD ["python", "-m", "shipyard", "--home", "{MODEL_HOME}", "serve", "{ref}", \\
     "--host", "0.0.0.0", "--port", "{PORT}", "--no-auth", "--reload-interval", "0"]
"""


def kserve_manifest(name: str, image: str) -> str:
    import yaml

    probe = {"httpGet": {"path": None, "port": PORT}, "initialDelaySeconds": 5,
             "periodSeconds": 10}
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": _image_name(name)},
        "spec": {"predictor": {"containers": [{
            "name": "kserve-container",
            "image": image,
            "ports": [{"containerPort": PORT, "protocol": "TCP"}],
            "env": [{"name": "PROTOCOL", "value": "v2"}],
            "readinessProbe": {**probe, "httpGet": {"path": "/v2/health/ready", "port": PORT}},
            "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": PORT}},
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                          "limits": {"cpu": "2", "memory": "2Gi"}},
        }], "protocolVersion": "v2"}},
    }
    return yaml.safe_dump(manifest, sort_keys=False)


def _format(version) -> str | None:
    ws = getattr(version, "_workspace", None)
    if ws is None:
        return None
    from shipyard.registry import read_artifact

    return read_artifact(ws.artifacts, version.artifact_digest).format


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _image_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "model"
