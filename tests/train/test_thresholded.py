"""A thresholded model decides every row exactly as it always has: saved
models keep their labels. The row hash is pandas' ``hash_pandas_object`` of
the row (features and sensitive column, salted with the seed), however the
rows arrive (a DataFrame of any dtypes, or validated column arrays)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shipyard.errors import DataError
from shipyard.train import ThresholdedModel

GROUPS = {
    "m": {"p0": 0.3, "op0": [">", 0.4], "p1": 0.7, "op1": [">", 0.6]},
    "f": {"p0": 1.0, "op0": ["<", 0.5], "p1": 0.0, "op1": [">", 0.2], "p_ignore": 0.25,
          "prediction_constant": 1.0},
    "1.0": {"p0": 0.5, "op0": [">", 0.1], "p1": 0.5, "op1": ["<", 0.9]},
}


def reference_decide(model: ThresholdedModel, X: pd.DataFrame, scores: np.ndarray):
    """The implementation saved models were decided with, verbatim."""
    keys = X[model.sensitive].astype(str).to_numpy()
    scores = np.asarray(scores, dtype=np.float64)
    positive = (scores > 0.5).astype(np.float64)
    for key, g in model.groups.items():
        rows = keys == key
        if not rows.any():
            continue
        s = scores[rows]
        p = g["p0"] * apply(g["op0"], s) + g["p1"] * apply(g["op1"], s)
        if "p_ignore" in g:
            p = g["p_ignore"] * g["prediction_constant"] + (1 - g["p_ignore"]) * p
        positive[rows] = p
    cols = [*dict.fromkeys([*list(model.features), model.sensitive])]
    hashed = pd.util.hash_pandas_object(X[cols], index=False,
                                        hash_key=f"{model.seed:016d}"[-16:]).to_numpy()
    uniform = (hashed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return model.classes_[(uniform < positive).astype(int)], positive


def apply(op, s):
    return (s > op[1]) if op[0] == ">" else (s < op[1])


def random_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Every dtype a frame may bring, with missing values, -0.0 and unicode."""
    frame = pd.DataFrame({
        "x": rng.normal(size=n),
        "i": rng.integers(-5, 5, n),
        "b": rng.random(n) < 0.5,
        "s": rng.choice(["a", "b", "ü", "", None], n),
        "o": pd.Series(rng.choice(["p", "q", None], n), dtype=object),
        "c": pd.Categorical(rng.choice(["u", "v", None], n)),
        "d": pd.to_datetime(rng.integers(0, 10**9, n), unit="s"),
        "f32": rng.normal(size=n).astype(np.float32),
        "i8": rng.integers(-3, 3, n).astype(np.int8),
        "g": rng.choice(["m", "f", "x", None], n),
        "gnum": rng.choice([1.0, 2.0, np.nan], n),
    })
    frame.loc[rng.random(n) < 0.2, "x"] = np.nan
    frame.loc[rng.random(n) < 0.1, "x"] = -0.0
    frame.loc[rng.random(n) < 0.1, "x"] = 0.0
    return frame


class Validated:
    """Column arrays read like a DataFrame, as the server's ``Columns``."""

    def __init__(self, data: dict, rows: int):
        self.data, self.columns, self.rows = data, list(data), rows

    def __len__(self):
        return self.rows

    def __getitem__(self, name):
        return self.data[name]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("n", [1, 3, 16, 17, 400])
def test_labels_are_those_of_the_previous_implementation(seed, n):
    rng = np.random.default_rng(seed)
    frame = random_frame(n, rng)
    sensitive = ["g", "gnum"][seed % 2]
    features = list(rng.permutation([c for c in frame.columns if c != sensitive])
                    [:rng.integers(1, 9)])
    if seed % 3 == 0:
        features.append(sensitive)  # the sensitive column may be a feature too
    model = ThresholdedModel(None, sensitive=sensitive, features=features,
                             classes=np.array(["no", "yes"], dtype=object), groups=GROUPS,
                             seed=int(rng.integers(0, 10**6)))
    scores = rng.random(n)
    want, want_positive = reference_decide(model, frame, scores)
    np.testing.assert_array_equal(model.decision_probability(frame, scores), want_positive)
    np.testing.assert_array_equal(model.decide(frame, scores), want)


@pytest.mark.parametrize("n", [1, 5, 300])
def test_validated_columns_decide_as_their_dataframe(n):
    """Lists of strings (None missing), float64 arrays, bool and numeric-category
    lists: the labels of the DataFrame the same values build."""
    rng = np.random.default_rng(n)
    age = rng.integers(18, 80, n).astype(float)
    age[::4] = np.nan
    data = {"age": age, "colour": rng.choice(["red", "blue", None], n).tolist(),
            "member": (rng.random(n) < 0.5).tolist(), "rank": rng.choice([1, 2, 3], n).tolist(),
            "ranked": rng.choice([1, 2.5, None], n).tolist(),
            "sex": rng.choice(["m", "f", "other", None], n).tolist()}
    frame = pd.DataFrame(data)
    model = ThresholdedModel(None, sensitive="sex", features=list(data)[:-1],
                             classes=[0, 1], groups=GROUPS, seed=7)
    scores = rng.random(n)
    np.testing.assert_array_equal(model.decide(Validated(data, n), scores),
                                  reference_decide(model, frame, scores)[0])


def test_refuses_input_without_its_columns():
    model = ThresholdedModel(None, sensitive="g", features=["x"], classes=[0, 1],
                             groups=GROUPS)
    with pytest.raises(DataError, match="needs column\\(s\\) 'g'"):
        model.decide(pd.DataFrame({"x": [1.0]}), np.array([0.5]))
    with pytest.raises(DataError, match="predicts on a DataFrame"):
        model.decide(np.zeros((1, 2)), np.array([0.5]))
