"""What a run cost: CPU time turned into an energy and CO2e estimate.

The estimate is deliberately simple and stated: every CPU-second is a core
busy at ``watts_per_core`` watts, so ``energy_kWh = cpu_seconds ×
watts_per_core / 3.6e6``, and ``co2e_g = energy_kWh × grid_gco2_per_kwh``.
Idle power, memory, disks and cooling are not counted.

>>> CostModel(watts_per_core=15, grid_gco2_per_kwh=400).metrics(3600)
{'cost.cpu_seconds': 3600.0, 'cost.energy_kwh': 0.015, 'cost.co2e_g': 6.0}
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from shipyard.errors import ConfigError

DEFAULT_WATTS_PER_CORE = 15.0
DEFAULT_GRID_GCO2_PER_KWH = 400.0
WATTS_ENV = "SHIPYARD_WATTS_PER_CORE"
GRID_ENV = "SHIPYARD_GRID_INTENSITY"


@dataclass(frozen=True)
class CostModel:
    """Watts per busy core and the grid's carbon intensity (gCO2e per kWh)."""

    watts_per_core: float = DEFAULT_WATTS_PER_CORE
    grid_gco2_per_kwh: float = DEFAULT_GRID_GCO2_PER_KWH

    @classmethod
    def resolve(cls, spec: Any = None) -> CostModel:
        """From a project's ``cost:`` section, else the environment, else defaults.

        Raises
        ------
        ConfigError
            An environment variable is not a non-negative number.
        """
        watts = getattr(spec, "watts_per_core", None)
        grid = getattr(spec, "grid_gco2_per_kwh", None)
        return cls(watts if watts is not None else _env(WATTS_ENV, DEFAULT_WATTS_PER_CORE),
                   grid if grid is not None else _env(GRID_ENV, DEFAULT_GRID_GCO2_PER_KWH))

    def energy_kwh(self, cpu_seconds: float) -> float:
        return cpu_seconds * self.watts_per_core / 3.6e6

    def metrics(self, cpu_seconds: float) -> dict[str, float]:
        """``cost.cpu_seconds``, ``cost.energy_kwh`` and ``cost.co2e_g`` for a run."""
        energy = self.energy_kwh(cpu_seconds)
        return {"cost.cpu_seconds": float(cpu_seconds), "cost.energy_kwh": energy,
                "cost.co2e_g": energy * self.grid_gco2_per_kwh}


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{name}={raw!r} is not a non-negative number",
                          hint=f"unset it for the default ({default:g})")
    return value
