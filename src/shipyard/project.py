"""The project file, ``shipyard.yaml``: one schema assembled from each
stage's own section model.

Each stage owns the pydantic model of its section; this module only puts
them together and turns every problem into a :class:`~shipyard.errors.ConfigError`
that names the file, the line, the key path and what was expected.

============  ==========================================  ==================
section       model                                       owned by
============  ==========================================  ==================
dataset,      :class:`shipyard.train.ProjectSpec`         ``shipyard.train``
target, task,
features,
seed, train,
cost
gates         :class:`shipyard.evaluate.GatePolicy`       ``shipyard.evaluate``
deploy        ``{model: shipyard.deploy.Deployment}``      ``shipyard.deploy``
monitor       :class:`shipyard.monitor.MonitorPolicy`      ``shipyard.monitor``
============  ==========================================  ==================

A new stage adds its section as one field of :class:`Project` (and one row
above); the loader, the located errors and the CLI need no change.

>>> project = parse_project('''
... dataset: adult@3
... target: income
... task: binary
... train:
...   candidates: [{name: logreg, estimator: sklearn.linear_model.LogisticRegression}]
... gates:
...   metrics: {roc_auc: {min: 0.8}}
... ''', resolve_estimators=False)
>>> project.dataset.ref, project.gates.metrics["roc_auc"].min
('adult@3', 0.8)
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError, field_validator

from shipyard.deploy import Deployment
from shipyard.errors import ConfigError
from shipyard.evaluate import GatePolicy
from shipyard.monitor import MonitorPolicy
from shipyard.names import did_you_mean
from shipyard.train import PARAM_TYPES, ProjectSpec, resolvable_problems

_UNIONS = (Union, types.UnionType)

__all__ = ["Project", "load_project", "load_section", "parse_project"]


class Project(ProjectSpec):
    """A whole ``shipyard.yaml``: training's sections plus every later stage's."""

    #: Promotion gates, checked by ``shipyard promote``.
    gates: GatePolicy | None = None
    #: How servers route each model, stored by ``shipyard deploy NAME --from shipyard.yaml``.
    deploy: dict[str, Deployment] | None = None
    #: How production traffic is watched: windows, thresholds, alert rules.
    monitor: MonitorPolicy | None = None

    @field_validator("deploy")
    @classmethod
    def _deploy_names(cls, value: dict[str, Deployment] | None) -> dict[str, Deployment] | None:
        return _check_deploy_names(value)


def _check_deploy_names(value: dict[str, Deployment] | None) -> dict[str, Deployment] | None:
    for name, deployment in (value or {}).items():
        if deployment.model != name:
            raise ValueError(f"{name}: primary {deployment.primary} is not a version of {name!r}")
    return value


#: Checks a section needs beyond its type, run after validation.
_SECTION_CHECKS = {"deploy": _check_deploy_names}


def load_section(path: str | os.PathLike, name: str) -> tuple[Any, dict[str, Any]]:
    """One stage's section of ``path`` — a project file's ``name:`` section,
    or a file holding only that section — validated by the stage's own model.

    Also returns the project file's ``target`` and ``features.sensitive``
    (when present) as defaults, which ``shipyard promote`` uses.

    Raises
    ------
    ConfigError
        The file cannot be read, or the section does not validate (located:
        file, line, key path).
    """
    field = Project.model_fields.get(name)
    if field is None or name in ProjectSpec.model_fields:
        raise ConfigError(f"{name!r} is not a section a stage owns",
                          hint=f"expected one of {', '.join(_stage_sections())}")
    file = Path(path)
    text = _read(file, f"{name} file", f"pass a shipyard.yaml with a {name}: section")
    root, data = _parse_yaml(text, str(file))
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: expected a mapping, got {_type_name(data)}")
    defaults: dict[str, Any] = {}
    loc: tuple = ()
    if name in data:
        defaults["target"] = data.get("target")
        features = data.get("features")
        if isinstance(features, Mapping):
            defaults["sensitive"] = features.get("sensitive")
        data, loc = data[name] or {}, (name,)
    try:
        value = TypeAdapter(field.annotation).validate_python(data)
        value = _SECTION_CHECKS.get(name, lambda v: v)(value)
    except ValidationError as exc:
        errors = [{**e, "loc": (name, *e["loc"])} for e in exc.errors()]
        problems = [((*loc, *_clean_loc(e["loc"][1:])), _message(e)) for e in errors]
        raise _config_error(str(file), root, problems) from exc
    except ValueError as exc:
        raise _config_error(str(file), root, [(loc, str(exc))]) from exc
    return value, defaults


def _stage_sections() -> list[str]:
    return [n for n in Project.model_fields if n not in ProjectSpec.model_fields]


def _read(file: Path, what: str, hint: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {file} does not exist", hint=hint) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {file}: {exc}", hint=hint) from exc


def _parse_yaml(text: str, source: str) -> tuple[Any, Any]:
    """The YAML node tree (for line numbers) and the data of ``text``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: invalid YAML: {problem}") from exc
    if root is not None:
        dupe = _duplicate_key(root, ())
        if dupe is not None:
            loc, node = dupe
            raise ConfigError(f"{source}, line {node.start_mark.line + 1}: {_key_path(loc)}: "
                              "this key appears twice; keep one")
    return root, data


def load_project(path: str | os.PathLike, *, resolve_estimators: bool = True) -> Project:
    """Read and validate a project file.

    Parameters
    ----------
    path
        The ``shipyard.yaml`` file.
    resolve_estimators
        Also import every candidate's estimator class and check its
        parameter names (imports scikit-learn; set False to check only the
        file itself).

    Returns
    -------
    Project
        The validated project; a relative dataset ``source`` is resolved
        against the file's folder.

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or does not validate. The message
        names the file, the line, the key path and what was expected, one
        problem a line.
    """
    file = Path(path)
    text = _read(file, "project file", "create shipyard.yaml or pass its path")
    return parse_project(text, source=str(file), base_dir=file.parent,
                         resolve_estimators=resolve_estimators)


def parse_project(text: str, *, source: str = "<string>", base_dir: str | os.PathLike | None = None,
                  resolve_estimators: bool = True) -> Project:
    """Validate project-file YAML ``text``; ``source`` names it in errors.

    See :func:`load_project`.
    """
    root, data = _parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (dataset, target, task, "
                          f"train, ...), got {_type_name(data)}")
    if base_dir is not None:
        data = _resolve_source(data, Path(base_dir))
    try:
        spec = Project.model_validate(data)
    except ValidationError as exc:
        problems = [(_clean_loc(e["loc"]), _message(e)) for e in exc.errors()]
        raise _config_error(source, root, problems) from exc
    if resolve_estimators:
        problems = resolvable_problems(spec)
        if problems:
            raise _config_error(source, root, problems)
    return spec


def _resolve_source(data: dict, base: Path) -> dict:
    ds = data.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("source"), str):
        src = ds["source"]
        if "://" not in src and not os.path.isabs(src):
            data = {**data, "dataset": {**ds, "source": str((base / src).resolve())}}
    return data


def _config_error(source: str, root: Any, problems: list[tuple[tuple, str]]) -> ConfigError:
    lines = []
    for loc, message in problems:
        line = _line_of(root, loc)
        where = f"{source}, line {line}" if line else source
        lines.append(f"{where}: {_key_path(loc) or '(top level)'}: {message}")
    head = lines[0] if len(lines) == 1 else \
        f"{source}: {len(lines)} problems\n" + "\n".join(f"  - {line}" for line in lines)
    return ConfigError(head)


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union tags (``lr.float.low`` → ``lr.low``)."""
    out: list = []
    for i, part in enumerate(loc):
        if (part in PARAM_TYPES and i >= 2 and loc[i - 2] == "search_space") or part == "[key]":
            continue
        out.append(part)
    return tuple(out)


def _key_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _message(error: dict) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = did_you_mean(loc[-1], allowed) if allowed else ""
        known = f" (expected one of: {', '.join(allowed)})" if allowed and not hint else ""
        return f"unknown key {loc[-1]!r}{hint}{known}"
    if kind == "missing":
        return "this key is required"
    if kind == "union_tag_not_found":
        return "a search-space parameter needs a type: int, float or categorical"
    if kind == "union_tag_invalid":
        return f"expected type: int, float or categorical, got {value.get('type')!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (key: value), got {_type_name(value)} {value!r}"
    if kind == "list_type":
        return f"expected a list, got {_type_name(value)} {value!r}"
    if loc and loc[-1] == "[key]":
        return f"keys must be strings, got {_type_name(value)} {value!r}"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {value!r}"
    msg = error["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{msg[0].lower()}{msg[1:]}, got {_type_name(value)} {value!r}"
    return f"{msg[0].lower()}{msg[1:]}, got {value!r}"


def _fields_at(loc: tuple) -> list[str]:
    """The field names the spec allows at ``loc`` (for did-you-mean)."""
    tp: Any = Project
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    if typing.get_origin(tp) in _UNIONS:  # a search-space parameter of unknown type
        return sorted({f for a in typing.get_args(tp) for f in _fields_at_model(a)})
    return []


def _fields_at_model(tp: Any) -> list[str]:
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _step(tp: Any, part: Any) -> Any:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(part)
        return field.annotation if field else None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    if origin in _UNIONS:  # a search-space parameter: pydantic names the member by its tag
        for arg in args:
            field = getattr(arg, "model_fields", {}).get("type")
            if field is not None and typing.get_args(field.annotation) == (part,):
                return arg
    return None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in _UNIONS:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _duplicate_key(node: Any, loc: tuple) -> tuple[tuple, Any] | None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                return (*loc, name), key
            seen.add(name)
            found = _duplicate_key(value, (*loc, name))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*loc, i))
            if found:
                return found
    return None


def _line_of(root: Any, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node on ``loc``."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
