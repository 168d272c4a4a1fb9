"""What a run ran on: interpreter, packages, git state, machine; and what it cost.

The environment is captured once per process (trials in one process share it)
and stored as a content-addressed JSON blob, so identical environments are
stored once. Nothing here may fail a run: every probe falls back to ``None``.
"""

from __future__ import annotations

import json
import os
import platform
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

GIT_TIMEOUT_S = 2.0
SEED_BITS = 32  # numpy's legacy global seed must be < 2**32

_lock = threading.Lock()
_cached: dict | None = None


def capture_environment() -> dict:
    """The environment of this process, captured on first call and cached.

    Returns
    -------
    dict
        ``python`` (version, implementation, executable), ``packages``
        (name → version of every installed distribution), ``git`` (commit,
        branch, dirty flag of the working directory's repository, or ``None``),
        ``platform``, ``cpu`` (count, model), ``hostname``.

    >>> env = capture_environment()
    >>> env["python"]["version"] == platform.python_version()
    True
    """
    global _cached
    with _lock:
        if _cached is None:
            _cached = {
                "python": {
                    "version": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "executable": sys.executable,
                },
                "packages": _packages(),
                "git": _git(os.getcwd()),
                "platform": {
                    "system": platform.system(),
                    "release": platform.release(),
                    "machine": platform.machine(),
                    "platform": platform.platform(),
                },
                "cpu": {"count": os.cpu_count(), "model": _cpu_model()},
                "hostname": socket.gethostname(),
            }
        return _cached


def environment_json(env: dict) -> bytes:
    """Canonical JSON bytes, so identical environments hash alike."""
    return json.dumps(env, sort_keys=True, separators=(",", ":")).encode()


def _packages() -> dict[str, str]:
    from importlib import metadata

    found: dict[str, str] = {}
    try:
        for dist in metadata.distributions():
            name = dist.metadata.get("Name") if dist.metadata else None
            if name:
                found.setdefault(name.lower().replace("_", "-"), dist.version)
    except Exception:  # a broken dist-info must not fail a run
        pass
    return dict(sorted(found.items()))


def _git(cwd: str) -> dict | None:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(("git", *args), cwd=cwd, capture_output=True, text=True,
                                  timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": None if status is None else bool(status),
        "root": git("rev-parse", "--show-toplevel"),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


# ------------------------------------------------------------------- seeds
def new_seed(*, derived: bool) -> int:
    """A fresh seed: from OS entropy, or, for nested runs, from the global
    ``random`` stream, so that a seeded parent reproduces its trials' seeds."""
    if derived:
        return random.getrandbits(SEED_BITS)
    return random.SystemRandom().getrandbits(SEED_BITS)


def apply_seed(seed: int) -> None:
    """Seed ``random`` and, when importable, numpy's global generator."""
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % (1 << SEED_BITS))


# ------------------------------------------------------------------- usage
@dataclass(frozen=True)
class Usage:
    """Process resource counters at one instant."""

    cpu_seconds: float
    wall: float

    @classmethod
    def now(cls) -> Usage:
        t = os.times()
        # process_time has nanosecond resolution, os.times only clock ticks (10 ms);
        # children count only once they have been waited for.
        return cls(time.process_time() + t.children_user + t.children_system,
                   time.perf_counter())


def peak_memory_mb() -> float | None:
    """Peak resident memory of this process (``ru_maxrss``) in MB, or ``None``
    where ``resource`` is unavailable (Windows). It is the process's peak since
    it started, not the run's."""
    try:
        import resource
    except ImportError:
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return rss / (1 << 20) if sys.platform == "darwin" else rss / 1024
