"""A candidate's search space as Optuna suggestions, samplers and pruners.

Optuna is imported only by :func:`make_sampler` and :func:`make_pruner`;
:func:`suggest` only calls the trial it is given.

Categorical choices that are lists (layer sizes such as ``[64, 32]``) are not
valid Optuna choices, so such a parameter is suggested as the *index* of its
choice and decoded here: ``trial.params`` holds the index, the dict
:func:`suggest` returns holds the choice.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shipyard.errors import ConfigError
from shipyard.train._spec import (CandidateSpec, CategoricalParam, FloatParam, IntParam,
                                  ParamSpec, _check_acyclic, _check_condition)

Space = Mapping[str, ParamSpec]
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
#: Most points :func:`grid_of` will build; a larger grid is a mistake, not a plan.
MAX_GRID = 100_000

_SPACE = TypeAdapter(dict[str, ParamSpec])


def suggest(trial: Any, space: Space | CandidateSpec | Mapping[str, dict]) -> dict[str, Any]:
    """Ask ``trial`` for one value of each parameter in ``space``.

    Parameters are asked in an order where each comes after the ones its
    ``when`` condition names; a conditional parameter is asked (and appears in
    the result) only when every condition holds.

    Parameters
    ----------
    trial
        An ``optuna.Trial`` (anything with ``suggest_int``, ``suggest_float``
        and ``suggest_categorical``).
    space
        Name -> parameter, a :class:`CandidateSpec` (its ``search_space``), or
        the same as plain mappings from a project file.

    Returns
    -------
    dict
        Parameter name -> value, ready to pass to the estimator.

    Raises
    ------
    ConfigError
        The space is not valid.
    """
    space = _as_space(space)
    values: dict[str, Any] = {}
    for name in _ordered(space):
        param = space[name]
        if not all(other in values and _same(values[other], want)
                   for other, want in (param.when or {}).items()):
            continue
        if isinstance(param, IntParam):
            values[name] = trial.suggest_int(name, param.low, param.high, step=param.step,
                                             log=param.log)
        elif isinstance(param, FloatParam):
            values[name] = trial.suggest_float(name, param.low, param.high, step=param.step,
                                               log=param.log)
        elif _by_index(param):
            index = trial.suggest_categorical(name, list(range(len(param.choices))))
            values[name] = copy.deepcopy(param.choices[index])
        else:
            values[name] = trial.suggest_categorical(name, list(param.choices))
    return values


def grid_of(space: Space | CandidateSpec | Mapping[str, dict]) -> dict[str, list]:
    """Every value of each parameter, as ``optuna.samplers.GridSampler`` takes it.

    Integers give every ``step`` from ``low`` to ``high``; floats need a
    ``step``; list choices appear as their indexes (see the module docs).
    Conditional parameters are in the grid too; trials where a condition
    fails simply do not ask for them.

    >>> grid_of({"n": {"type": "int", "low": 1, "high": 5, "step": 2},
    ...          "act": {"type": "categorical", "choices": ["relu", "tanh"]},
    ...          "hidden": {"type": "categorical", "choices": [[8], [8, 8]]}})
    {'n': [1, 3, 5], 'act': ['relu', 'tanh'], 'hidden': [0, 1]}

    Raises
    ------
    ConfigError
        A float has no step, or the grid has more than ``MAX_GRID`` points.
    """
    space = _as_space(space)
    grid: dict[str, list] = {}
    for name, param in space.items():
        if isinstance(param, IntParam):
            grid[name] = list(range(param.low, param.high + 1, param.step))
        elif isinstance(param, FloatParam):
            if param.step is None:
                raise ConfigError(f"search_space.{name}: grid search needs a finite grid, but "
                                  f"this float has no step",
                                  hint="give it a step, use type: categorical, or use search "
                                  "kind random or tpe")
            count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
            grid[name] = [round(param.low + i * param.step, 12) for i in range(count)]
        elif _by_index(param):
            grid[name] = list(range(len(param.choices)))
        else:
            grid[name] = list(param.choices)
    points = math.prod(len(v) for v in grid.values())
    if points > MAX_GRID:
        raise ConfigError(f"the search grid has {points:,} points, more than {MAX_GRID:,}",
                          hint="coarsen the steps or use search kind random or tpe")
    return grid


def make_sampler(kind: str, seed: int, space: Space | CandidateSpec | None = None) -> Any:
    """An Optuna sampler: ``grid`` (over :func:`grid_of` ``space``), ``random`` or ``tpe``.

    The same ``seed`` gives the same sequence of suggestions.

    Raises
    ------
    ConfigError
        Unknown ``kind``, or ``grid`` without a finite ``space``.
    """
    if kind not in SAMPLERS:
        raise ConfigError(f"unknown search kind {kind!r}; expected one of {', '.join(SAMPLERS)}")
    import optuna

    if kind == "grid":
        if space is None:
            raise ConfigError("grid search needs the search space to build its grid")
        grid = grid_of(space)
        if not grid:
            raise ConfigError("grid search needs a search space with at least one parameter",
                              hint="add a search_space or use search kind random")
        return optuna.samplers.GridSampler(grid, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(kind: str) -> Any:
    """An Optuna pruner: ``none``, ``median`` or ``hyperband``.

    Raises
    ------
    ConfigError
        Unknown ``kind``.
    """
    if kind not in PRUNERS:
        raise ConfigError(f"unknown pruner {kind!r}; expected one of {', '.join(PRUNERS)}")
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


# ---------------------------------------------------------------- helpers
def _as_space(space: Any) -> dict[str, ParamSpec]:
    if isinstance(space, CandidateSpec):
        return dict(space.search_space)
    if not isinstance(space, Mapping):
        raise ConfigError(f"a search space is a mapping of parameter name -> parameter, got "
                          f"{type(space).__name__}")
    try:
        checked = _SPACE.validate_python(dict(space))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p not in ("int", "float", "categorical"))
        raise ConfigError(f"search_space.{where}: {first['msg'].removeprefix('Value error, ')}"
                          + (f" ({exc.error_count() - 1} more problems)"
                             if exc.error_count() > 1 else "")) from exc
    try:
        for name, param in checked.items():
            for other, value in (param.when or {}).items():
                _check_condition(checked, name, other, value)
        _check_acyclic(checked)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return checked


def _ordered(space: dict[str, ParamSpec]) -> list[str]:
    """Names with each after those its condition names (declaration order otherwise)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name not in done:
            for other in space[name].when or {}:
                visit(other)
            done.append(name)

    for name in space:
        visit(name)
    return done


def _by_index(param: CategoricalParam) -> bool:
    return any(isinstance(c, (list, dict)) for c in param.choices)


def _same(value: Any, want: Any) -> bool:
    """Equal, and ``True`` is not ``1``."""
    return value == want and isinstance(value, bool) == isinstance(want, bool)
