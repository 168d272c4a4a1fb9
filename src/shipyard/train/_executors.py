"""Where trials run: this process, a local process pool, or Ray.

An :class:`Executor` receives the training data once (:meth:`Executor.start`)
and then evaluates batches of :class:`~shipyard.train._trial.TrialTask`
(:meth:`Executor.run`), returning results in task order. Executors never
touch the workspace: the coordinator does all the tracking, so SQLite sees
writes from one process only.

Backends are listed in :data:`EXECUTORS` as ``name -> "dotted.path"`` and
imported on first use, so ``import shipyard.train`` never imports Ray.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from shipyard.errors import ConfigError, TrainingError
from shipyard.train._trial import TrialData, TrialResult, TrialTask, run_trial

#: Executor name -> class, resolved lazily.
EXECUTORS = {
    "local": "shipyard.train._executors.LocalExecutor",
    "ray": "shipyard.train._executors.RayExecutor",
}


class Executor(ABC):
    """Evaluates trials, up to ``n_jobs`` at a time.

    Parameters
    ----------
    n_jobs
        Trials evaluated at once.
    address
        Where the backend lives (Ray: ``ray://host:10001`` or ``auto``);
        None for a local one.
    """

    name: str = ""
    #: Whether trials run inside the coordinating process (their CPU time is
    #: then already in the process's own counters).
    in_process: bool = False

    def __init__(self, n_jobs: int = 1, address: str | None = None):
        self.n_jobs = n_jobs
        self.address = address

    def __repr__(self) -> str:
        address = f", address={self.address!r}" if self.address else ""
        return f"{type(self).__name__}(n_jobs={self.n_jobs}{address})"

    @abstractmethod
    def start(self, data: TrialData) -> None:
        """Make ``data`` available to every worker (sent once)."""

    @abstractmethod
    def run(self, tasks: Sequence[TrialTask]) -> list[TrialResult]:
        """Evaluate ``tasks`` in parallel; results in the order of ``tasks``."""

    def close(self) -> None:
        """Release workers. Called once, also after an error."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(name: str, *, n_jobs: int = 1, address: str | None = None) -> Executor:
    """The executor called ``name`` (see :data:`EXECUTORS`).

    Raises
    ------
    ConfigError
        Unknown name, or its backend is not installed.
    """
    path = EXECUTORS.get(name)
    if path is None:
        raise ConfigError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)(n_jobs=n_jobs, address=address)


# ------------------------------------------------------------------ local
_WORKER_DATA: TrialData | None = None
#: Seconds between the watchdog's checks that the coordinator is still there.
PARENT_POLL_SECONDS = 1.0
#: Exit status of a worker that ends because its coordinator is gone.
ORPHAN_EXIT = 75
_PR_SET_PDEATHSIG = 1


def _init_worker(data: TrialData, coordinator: int) -> None:
    global _WORKER_DATA
    die_with_parent(coordinator)
    _WORKER_DATA = data


def die_with_parent(parent_pid: int) -> None:
    """End this process as soon as its parent, process ``parent_pid``, is gone.

    A worker left behind by a coordinator killed with SIGKILL would otherwise
    hold its memory (and keep multiprocessing's resource tracker alive, since
    it holds the tracker's pipe) until someone finds it. On Linux the kernel
    sends the worker SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
    everywhere, a daemon thread watches the parent and ends the process with
    ``os._exit`` (no cleanup is owed: the coordinator does all the tracking).
    """
    if sys.platform.startswith("linux"):
        _kill_me_with_parent()
    if os.getppid() != parent_pid:  # it died before we asked to die with it
        _exit_orphaned(parent_pid)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="shipyard-parent-watch").start()


def _kill_me_with_parent() -> None:
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl (unusual libc): the watchdog remains
        pass


def _watch_parent(parent_pid: int) -> None:
    import multiprocessing
    from multiprocessing.connection import wait

    # The parent's sentinel (a pipe end it holds) becomes ready when it exits,
    # also where os.getppid() never changes (Windows); the ppid check covers
    # processes started without one.
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    while True:
        if sentinel is not None:
            if wait([sentinel], timeout=PARENT_POLL_SECONDS):
                _exit_orphaned(parent_pid)
        else:
            threading.Event().wait(PARENT_POLL_SECONDS)
        if os.getppid() != parent_pid:
            _exit_orphaned(parent_pid)


def _exit_orphaned(parent_pid: int) -> None:
    try:
        sys.stderr.write(f"shipyard: trial worker {os.getpid()} exits: its coordinator "
                         f"(process {parent_pid}) is gone\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(ORPHAN_EXIT)


def _run_in_worker(task: TrialTask) -> TrialResult:
    assert _WORKER_DATA is not None, "worker started without its data"
    return run_trial(_WORKER_DATA, task)


class LocalExecutor(Executor):
    """Trials on this machine: in this process for ``n_jobs=1`` (nothing to
    start), else in a pool of ``n_jobs`` spawned processes that each receive
    the data once, when they start, and live for the whole training.

    Workers die with the coordinator, also when it is killed with SIGKILL
    (see :func:`die_with_parent`). On Linux they die with the *thread* that
    started them, which is the one calling :meth:`run`: start, run and close
    the executor from one thread, as :func:`~shipyard.train.train` does.
    """

    name = "local"

    def __init__(self, n_jobs: int = 1, address: str | None = None):
        if address:
            raise ConfigError("the local executor takes no address; use executor: ray")
        super().__init__(n_jobs, None)
        self.in_process = n_jobs == 1
        self._data: TrialData | None = None
        self._pool: Any = None

    def start(self, data: TrialData) -> None:
        self._data = data
        if self.n_jobs > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the coordinator holds DB connections and threads
            self._pool = ProcessPoolExecutor(self.n_jobs,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(data, os.getpid()))

    def run(self, tasks: Sequence[TrialTask]) -> list[TrialResult]:
        if self._data is None:
            raise TrainingError("the executor was not started with the training data")
        if self._pool is None:
            return [run_trial(self._data, task) for task in tasks]
        from concurrent.futures.process import BrokenProcessPool

        try:
            return list(self._pool.map(_run_in_worker, tasks))
        except BrokenProcessPool as exc:
            raise TrainingError(f"a trial worker process died: {exc}",
                                hint="it may have run out of memory; lower n_jobs") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# -------------------------------------------------------------------- ray
class RayExecutor(Executor):
    """Trials as Ray tasks; the data is put in the object store once.

    Uses the Ray already initialised in this process if there is one; else
    connects to ``address``, or starts a local Ray with ``n_jobs`` CPUs (and
    shuts it down on :meth:`close`).
    """

    name = "ray"

    def __init__(self, n_jobs: int = 1, address: str | None = None):
        super().__init__(n_jobs, address)
        self._started_ray = False
        self._data_ref: Any = None
        self._remote: Any = None

    def start(self, data: TrialData) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("executor: ray needs the ray package, which is not installed",
                              hint="pip install 'shipyard[ray]'") from exc
        if not ray.is_initialized():
            import logging

            # Loopback-only local cluster, no token prompt (see STACK.md).
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.WARNING,
                             log_to_driver=False)
                else:
                    ray.init(num_cpus=self.n_jobs, include_dashboard=False,
                             logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...
                where = f"at {self.address}" if self.address else "locally"
                raise TrainingError(f"could not start Ray {where}: {exc}") from exc
            self._started_ray = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        self._data_ref = ray.put(data)

    def run(self, tasks: Sequence[TrialTask]) -> list[TrialResult]:
        import ray

        if self._remote is None:
            raise TrainingError("the executor was not started with the training data")
        try:
            return ray.get([self._remote.remote(self._data_ref, task) for task in tasks])
        except ray.exceptions.RayError as exc:
            raise TrainingError(f"a Ray trial task failed: {exc}") from exc

    def close(self) -> None:
        self._data_ref = self._remote = None
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
