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
