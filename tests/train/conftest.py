"""Small generated data and a throwaway artifact store for the training tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.store import ArtifactStore


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture(scope="session")
def classification():
    """200 rows, 6 numeric features, binary target."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=200, n_features=6, n_informative=4, random_state=0)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(6)]), y


@pytest.fixture(scope="session")
def mixed_frame():
    return make_mixed_frame()


def make_mixed_frame():
    """Every column kind, with missing values: numeric, categorical, bool,
    datetime and free text; binary target."""
    rng = np.random.default_rng(0)
    n = 120
    words = ["good", "bad", "fine", "great", "awful", "ok", "slow", "fast", "cheap", "loud"]
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, n).astype(float),
        "income": rng.normal(50_000, 10_000, n),
        "city": rng.choice(["oslo", "rome", "paris"], n),
        "member": rng.choice([True, False], n),
        "joined": pd.date_range("2023-01-01", periods=n, freq="37h"),
        "review": [" ".join(rng.choice(words, 6)) for _ in range(n)],
    })
    frame.loc[::7, "age"] = np.nan
    frame.loc[::5, "city"] = None
    frame.loc[::11, "review"] = None
    frame.loc[::13, "joined"] = pd.NaT
    y = ((frame["age"].fillna(40) > 45) ^ (frame["city"] == "rome")).astype(int).to_numpy()
    return frame, y


# ------------------------------------------------------- training projects
@pytest.fixture
def ws(tmp_path):
    import shipyard

    workspace = shipyard.Workspace.open(tmp_path / "ws")
    yield workspace
    workspace.close()


def toy_frame(n: int = 240, *, weights=None, seed: int = 0) -> pd.DataFrame:
    """Numeric features, one categorical, binary target ``y``."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=5, n_informative=3, weights=weights,
                               random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    frame["colour"] = np.array(["red", "green", "blue"])[np.arange(n) % 3]
    frame["y"] = y
    return frame


def project_yaml(*, dataset: str = "toy@latest", target: str = "y", task: str = "binary",
                 search: str = "{kind: random, n_trials: 4}", split: str = "{folds: 3}",
                 imbalance: str = "none", candidates: str | None = None, name: str = "toy",
                 extra: str = "") -> str:
    candidates = candidates or """
    - name: logreg
      estimator: sklearn.linear_model.LogisticRegression
      params: {max_iter: 200}
      search_space:
        C: {type: float, low: 0.01, high: 10, log: true}"""
    return f"""
name: {name}
dataset: {dataset}
target: {target}
task: {task}
seed: 7
{extra}
train:
  split: {split}
  imbalance: {imbalance}
  search: {search}
  candidates:{candidates}
"""


@pytest.fixture
def toy(ws):
    """``ws`` with dataset ``toy`` registered."""
    ws.datasets.register("toy", toy_frame())
    return ws


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray for the whole test session."""
    import os

    import ray
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024,
                 log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def project():
    """``project(**kw)``: a parsed ProjectSpec from :func:`project_yaml` keywords."""
    from shipyard.project import parse_project

    return lambda **kw: parse_project(project_yaml(**kw))


@pytest.fixture(name="toy_frame")
def _toy_frame():
    return toy_frame


@pytest.fixture(name="project_yaml")
def _project_yaml():
    return project_yaml
