"""A trained, registered model and a real uvicorn server on loopback.

The workspace (dataset ``toy``, models ``toy`` and ``swap``) is built once per
test session (per xdist worker); each test module starts its own server.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Self

import numpy as np
import pandas as pd
import pytest

from shipyard import Workspace

COLUMNS = ["x0", "x1", "x2", "age", "colour", "member"]


def toy_frame(n: int = 160, seed: int = 0) -> pd.DataFrame:
    """Numeric (``age`` with missing values), categorical and bool columns; binary ``y``."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x0": rng.normal(size=n), "x1": rng.normal(size=n), "x2": rng.normal(size=n),
        "age": rng.integers(18, 80, n).astype(float),
        "colour": np.array(["red", "green", "blue"])[np.arange(n) % 3],
        "member": np.arange(n) % 2 == 0,
    })
    frame.loc[::9, "age"] = np.nan
    frame["y"] = ((frame["x0"] + (frame["colour"] == "red")) > 0.5).astype(int)
    return frame


def project(seed: int, name: str) -> str:
    return f"""
name: {name}
dataset: toy@latest
target: y
task: binary
seed: {seed}
train:
  split: {{folds: 2}}
  search: {{kind: random, n_trials: 1}}
  candidates:
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {{max_iter: 200}}
      search_space:
        C: {{type: float, low: 0.01, high: 10, log: true}}
"""


def record(**changes):
    """One valid input row."""
    row = {"x0": 0.5, "x1": -1.0, "x2": 2, "age": 41.0, "colour": "red", "member": True}
    row.update(changes)
    return row


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """``(ws, runs)``: model ``toy@champion`` (version 1) and two runs for ``swap``."""
    from shipyard.project import parse_project
    from shipyard.train import train

    ws = Workspace.open(tmp_path_factory.mktemp("serve") / "home")
    ws.datasets.register("toy", toy_frame())
    runs = [train(ws, parse_project(project(seed, f"p{seed}"))).study_run_id for seed in (1, 2)]
    ws.models.register("toy", runs[0])
    ws.models.set_alias("toy", "champion", 1)
    yield ws, runs
    ws.close()


@pytest.fixture(scope="session")
def keys(served):
    """Secrets by role: ``predict``, ``metrics``, ``admin``."""
    from shipyard.security import ApiKeys

    api = ApiKeys(served[0])
    return {scope: api.create(f"test-{scope}", [scope], actor="tests")[1]
            for scope in ("predict", "metrics", "admin")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn (uvloop, httptools) in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, host="127.0.0.1", port=self.port, loop="uvloop", http="httptools",
            log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def live(served):
    """A server for ``toy@champion`` with auth on (DB checked on every request)."""
    from shipyard.serve import create_app

    app = create_app(served[0], ["toy@champion"], max_body_bytes=256 * 1024, max_rows=500,
                     reload_interval=0, key_cache_ttl=0)
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def client(live, keys):
    """An httpx client with a ``predict`` key."""
    import httpx

    with httpx.Client(base_url=live.url, headers=bearer(keys["predict"]), timeout=30) as c:
        yield c
