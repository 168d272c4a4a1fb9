import doctest
import importlib
import subprocess
import sys

import pytest

import shipyard.train

MODULES = ["shipyard.train", "shipyard.train._spec", "shipyard.train._preprocess",
           "shipyard.train._artifacts", "shipyard.train._torch_mlp", "shipyard.train._split",
           "shipyard.train._space", "shipyard.train._metrics", "shipyard.train._imbalance"]


def test_import_is_light():
    """scikit-learn, LightGBM, torch and skops load only when a name needs them."""
    code = ("import sys, shipyard.train\n"
            "from shipyard.train import ProjectSpec, resolvable_problems\n"
            "print(sorted(m for m in ('sklearn', 'lightgbm', 'torch', 'skops', 'safetensors')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in shipyard.train.__all__:
        assert getattr(shipyard.train, name) is not None
    assert set(shipyard.train.__all__) <= set(dir(shipyard.train))
    assert sorted(shipyard.train.__all__) == sorted(shipyard.train._EXPORTS)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        shipyard.train.nothing  # noqa: B018


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
