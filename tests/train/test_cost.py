import doctest

import pytest

import shipyard.train._cost as cost_module
from shipyard.errors import ConfigError
from shipyard.train import CostModel
from shipyard.train._spec import CostSpec


def test_doctests():
    assert doctest.testmod(cost_module).failed == 0


def test_spec_beats_environment_beats_defaults(monkeypatch):
    assert CostModel.resolve() == CostModel(15.0, 400.0)
    monkeypatch.setenv("SHIPYARD_WATTS_PER_CORE", "10")
    monkeypatch.setenv("SHIPYARD_GRID_INTENSITY", "50")
    assert CostModel.resolve() == CostModel(10.0, 50.0)
    assert CostModel.resolve(CostSpec(watts_per_core=20)) == CostModel(20.0, 50.0)
    metrics = CostModel(10.0, 50.0).metrics(360.0)
    assert metrics["cost.energy_kwh"] == pytest.approx(0.001)
    assert metrics["cost.co2e_g"] == pytest.approx(0.05)


def test_a_bad_environment_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SHIPYARD_WATTS_PER_CORE", "lots")
    with pytest.raises(ConfigError, match="SHIPYARD_WATTS_PER_CORE='lots'"):
        CostModel.resolve()
