"""Environment capture: what it records, that it is cached, that it never fails."""

import platform
import random
import subprocess
from importlib import metadata

import numpy as np
import pytest

from shipyard.tracking import _environment
from shipyard.tracking._environment import (Usage, apply_seed, capture_environment,
                                            environment_json, new_seed, peak_memory_mb)


@pytest.fixture
def fresh_capture(monkeypatch):
    monkeypatch.setattr(_environment, "_cached", None)
    yield
    monkeypatch.setattr(_environment, "_cached", None)


def test_records_interpreter_packages_machine(fresh_capture):
    env = capture_environment()
    assert env["python"]["version"] == platform.python_version()
    assert env["python"]["implementation"] == platform.python_implementation()
    assert env["packages"]["sqlalchemy"] == metadata.version("sqlalchemy")
    assert env["packages"]["numpy"] == np.__version__
    assert list(env["packages"]) == sorted(env["packages"])
    assert env["platform"]["system"] == platform.system()
    assert env["cpu"]["count"] >= 1
    assert env["hostname"]


def test_is_captured_once_per_process(fresh_capture):
    assert capture_environment() is capture_environment()


def test_environment_json_is_canonical():
    assert environment_json({"b": 1, "a": {"y": 2, "x": 1}}) == b'{"a":{"x":1,"y":2},"b":1}'


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_git_commit_and_dirty_flag(tmp_path, monkeypatch, fresh_capture):
    git(tmp_path, "init", "-q")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
        "--allow-empty", "-m", "first")
    (tmp_path / "f.txt").write_text("a")
    git(tmp_path, "add", "f.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "second")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    monkeypatch.chdir(tmp_path)
    clean = capture_environment()["git"]
    assert clean["commit"] == head and clean["dirty"] is False

    monkeypatch.setattr(_environment, "_cached", None)
    (tmp_path / "f.txt").write_text("changed")
    assert capture_environment()["git"] == {**clean, "dirty": True}


def test_outside_a_repository_git_is_none(tmp_path, monkeypatch, fresh_capture):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert capture_environment()["git"] is None


def test_a_hanging_git_never_fails(monkeypatch, fresh_capture):
    def hang(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", hang)
    assert capture_environment()["git"] is None


def test_a_missing_git_never_fails(tmp_path, monkeypatch, fresh_capture):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the PATH
    assert capture_environment()["git"] is None


def test_seeds():
    apply_seed(123)
    a = (random.random(), np.random.rand())
    apply_seed(123)
    assert (random.random(), np.random.rand()) == a
    assert 0 <= new_seed(derived=False) < 2**32
    random.seed(9)
    first = new_seed(derived=True)
    random.seed(9)
    assert new_seed(derived=True) == first


def test_usage_and_peak_memory():
    before = Usage.now()
    sum(i for i in range(300_000))
    after = Usage.now()
    assert after.wall > before.wall and after.cpu_seconds >= before.cpu_seconds
    assert 10 < peak_memory_mb() < 1_000_000
