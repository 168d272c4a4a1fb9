"""The stage order holds: layers, no cycles, no reaching into another
package's private modules, one exception hierarchy, a light CLI start."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp

import shipyard
import shipyard.errors

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "pandas", "sklearn", "numpy", "pyarrow", "torch", "lightgbm", "fastapi")


def test_import_contracts_are_kept():
    """``lint-imports``: the layers of docs/architecture.md and no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "2 kept, 0 broken" in out.stdout


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_module_imports_another_packages_private_modules():
    graph = grimp.build_graph("shipyard", exclude_type_checking_imports=True)
    bad = []
    for importer in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(importer):
            parts = imported.split(".")
            private = any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
            if private and _package(importer) != _package(imported):
                bad.append(f"{importer} -> {imported}")
    assert bad == []


def test_a_private_import_would_be_caught(tmp_path):
    """The check above can fail: grimp sees a function-level private import."""
    pkg = tmp_path / "demo_pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    for path in (pkg, pkg / "a", pkg / "b"):
        (path / "__init__.py").write_text("")
    (pkg / "a" / "_impl.py").write_text("X = 1\n")
    (pkg / "b" / "use.py").write_text("def f():\n    from demo_pkg.a._impl import X\n    return X\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("demo_pkg")
        assert "demo_pkg.a._impl" in graph.find_modules_directly_imported_by("demo_pkg.b.use")
    finally:
        sys.path.remove(str(tmp_path))


def _all_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(shipyard.__path__, "shipyard."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_every_exception_is_a_shipyard_error_defined_in_errors():
    """One hierarchy: every exception class is defined in shipyard.errors and
    derives from ShipyardError (so the CLI prints it and callers catch one)."""
    outside, foreign = [], []
    for name in _all_modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional extra that is not installed
            continue
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) \
                    and value.__module__ == name and name != "shipyard.errors":
                outside.append(f"{name}.{attr}")
    for attr, value in vars(shipyard.errors).items():
        if inspect.isclass(value) and issubclass(value, BaseException) \
                and value.__module__ == "shipyard.errors" \
                and not issubclass(value, shipyard.errors.ShipyardError):
            foreign.append(attr)
    assert outside == []
    assert foreign == []


def _loaded_after(code: str) -> list[str]:
    probe = (f"import sys, io, contextlib\nwith contextlib.redirect_stdout(io.StringIO()):\n"
             + "".join(f"    {line}\n" for line in code.splitlines())
             + f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_shipyard_loads_no_heavy_library():
    assert _loaded_after("import shipyard, shipyard.errors") == []


def test_cli_help_loads_no_heavy_library():
    code = ("from shipyard.cli import app\n"
            "from typer.main import get_command\n"
            "try:\n"
            "    get_command(app).main(['--help'], standalone_mode=False)\n"
            "except SystemExit:\n"
            "    pass\n")
    assert _loaded_after(code) == []
    for sub in ("runs", "models", "data", "train", "serve", "promote", "rag"):
        assert _loaded_after(code.replace("['--help']", f"[{sub!r}, '--help']")) == [], sub
