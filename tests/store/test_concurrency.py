"""Many processes writing one workspace at once, on SQLite and PostgreSQL.

Every numbered write (dataset and model versions, deployment revisions,
audit sequence numbers) hands out each number exactly once, without gaps,
and nobody fails. The processes are real (``spawn``), open their workspace
first and then wait on one barrier, so that their writes really race.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import pandas as pd
import pytest

from shipyard import Workspace

WORKERS = 8
SPAWN = mp.get_context("spawn")
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def workers():
    """Eight worker processes for the whole module (starting them is the slow
    part), and a manager to make barriers that tasks can share."""
    with ProcessPoolExecutor(WORKERS, mp_context=SPAWN) as pool, SPAWN.Manager() as manager:
        yield pool, manager


def race(workers, target, args: list[tuple]) -> list:
    """Run ``target(barrier, *a)`` for each ``a``, one per worker process,
    released together by ``barrier``; return what each returned, in order.
    Fails with every traceback if any of them failed."""
    pool, manager = workers
    assert len(args) <= WORKERS  # more would queue behind the barrier forever
    barrier = manager.Barrier(len(args), timeout=TIMEOUT_S / 2)
    futures = [pool.submit(_report, i, target, barrier, a) for i, a in enumerate(args)]
    got = [f.result(timeout=TIMEOUT_S) for f in futures]
    failures = [value for ok, value in got if not ok]
    assert not failures, f"{len(failures)} of {len(args)} processes failed:\n" + \
        "\n".join(failures)
    return [value for _, value in got]


def _report(index: int, target, barrier, args: tuple) -> tuple[bool, object]:
    try:
        return True, target(barrier, *args)
    except BaseException:  # noqa: BLE001 (reported to the parent, which fails the test)
        barrier.abort()  # the others must not wait for this one
        return False, f"--- worker {index}\n{traceback.format_exc()}"


def _fresh_postgres_url(pg_server) -> str:
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix, query = pg_server.get_uri().split("?", 1)
    return f"{prefix.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture
def home(db_url, tmp_path):
    """(home, db_url, artifacts) of a workspace already migrated, on each backend."""
    spec = (str(tmp_path / "home"), db_url, str(tmp_path / "artifacts"))
    Workspace.open(spec[0], db_url=spec[1], artifacts=spec[2]).close()
    return spec


def open_workspace(spec) -> Workspace:
    home, db_url, artifacts = spec
    return Workspace.open(home, db_url=db_url, artifacts=artifacts)


class ConflictCount(logging.Handler):
    """Counts the writes ``Database.retry`` repeated after a unique-key
    conflict. With the writer locks there are none: numbers are allocated one
    writer at a time. (Without them, the retries would mostly hide the races.)"""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "unique-key conflict" in record.getMessage()


@contextmanager
def counting_conflicts() -> Iterator[ConflictCount]:
    logger = logging.getLogger("shipyard.store._db")
    handler, level = ConflictCount(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# --------------------------------------------------------------- datasets
def _register_versions(barrier, spec, worker: int, n: int) -> tuple[list[int], int]:
    ws = open_workspace(spec)
    try:
        barrier.wait()
        with counting_conflicts() as conflicts:
            versions = [ws.datasets.register("shared",
                                             pd.DataFrame({"worker": [worker], "i": [i]})).version
                        for i in range(n)]
        return versions, conflicts.count
    finally:
        ws.close()


def test_concurrent_registrations_of_one_dataset_get_versions_1_to_n(workers, home):
    per_worker = 10
    got = race(workers, _register_versions, [(home, w, per_worker) for w in range(WORKERS)])
    total = WORKERS * per_worker
    assert sorted(v for vs, _ in got for v in vs) == list(range(1, total + 1))
    assert all(vs == sorted(vs) for vs, _ in got)  # each writer's versions increase
    assert sum(conflicts for _, conflicts in got) == 0
    with open_workspace(home) as ws:
        assert [v.version for v in ws.datasets.versions("shared")] == list(range(1, total + 1))
        entries = ws.audit.entries("dataset", "shared")
        assert sorted(e.details["version"] for e in entries) == list(range(1, total + 1))
        assert ws.audit.verify().ok


# ------------------------------------------------------------------ audit
def _append(barrier, spec, worker: int, n: int) -> list[int]:
    ws = open_workspace(spec)
    try:
        barrier.wait()
        return [ws.db.retry(lambda s, i=i: ws.audit.append(
                    s, actor=f"w{worker}", action="thing.change", object_type="thing",
                    object_id=f"{worker}-{i}")).seq
                for i in range(n)]
    finally:
        ws.close()


def test_concurrent_audit_appends_keep_one_gapless_chain(workers, home):
    per_worker = 20
    got = race(workers, _append, [(home, w, per_worker) for w in range(WORKERS)])
    total = WORKERS * per_worker
    assert sorted(s for seqs in got for s in seqs) == list(range(1, total + 1))
    with open_workspace(home) as ws:
        result = ws.audit.verify()
        assert result.ok and result.checked == total and result.head_seq == total
        assert [e.seq for e in ws.audit.entries()] == list(range(1, total + 1))


# --------------------------------------------- model versions, deployments
def _trained_run(ws, seed: int) -> str:
    """A finished run that saved a small model, as Shipyard's training logs it."""
    from sklearn.linear_model import LogisticRegression

    from shipyard.train import save_model

    X = pd.DataFrame({"x0": [0.0, 1.0, 2.0, 3.0], "x1": [1.0, 0.0, 1.0, float(seed)]})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    artifact = save_model(model, ws.artifacts)
    with ws.start_run("train") as run:
        run.set_tag("model.digest", artifact.digest)
        run.log_dict("model/signature.json", {
            "inputs": [{"name": c, "dtype": "float64"} for c in X.columns],
            "output": "classification", "classes": [0, 1]})
    return run.id


def _register_models(barrier, spec, worker: int, run_ids: list[str]) -> dict:
    ws = open_workspace(spec)
    try:
        barrier.wait()
        with counting_conflicts() as conflicts:
            versions = [ws.models.register("m", run_id, onnx=False).version
                        for run_id in run_ids]
            # Every spec differs from every other, so every set makes a new revision.
            revisions = [ws.deployments.set("m", {
                "strategy": "canary", "primary": "m@1", "candidate": "m@2",
                "weight": worker * 10 + i + 1}).revision for i in range(3)]
        return {"versions": versions, "revisions": revisions, "conflicts": conflicts.count}
    finally:
        ws.close()


def test_concurrent_model_registrations_and_deployments_number_each_once(workers, home):
    per_worker = 2
    with open_workspace(home) as ws:
        run_ids = [_trained_run(ws, seed) for seed in range(WORKERS * per_worker)]
    got = race(workers, _register_models,
               [(home, w, run_ids[w * per_worker:(w + 1) * per_worker]) for w in range(WORKERS)])
    versions = sorted(v for g in got for v in g["versions"])
    revisions = sorted(r for g in got for r in g["revisions"])
    assert versions == list(range(1, WORKERS * per_worker + 1))
    assert revisions == list(range(1, WORKERS * 3 + 1))
    assert sum(g["conflicts"] for g in got) == 0
    with open_workspace(home) as ws:
        assert [v.version for v in ws.models.versions("m")] == versions
        assert ws.deployments.get("m").revision == WORKERS * 3
        assert ws.audit.verify().ok


# ------------------------------------------------------------- first open
def _open_each(barrier, specs: list[tuple]) -> list[str]:
    """Open each fresh workspace in turn, all workers at once; the errors."""
    errors = []
    for spec in specs:
        barrier.wait()
        try:
            open_workspace(spec).close()
        except Exception:  # noqa: BLE001 (one failed round must not stop the others)
            errors.append(traceback.format_exc())
    return errors


@pytest.mark.parametrize("backend, rounds", [("sqlite", 10), ("postgresql", 3)])
def test_many_processes_opening_a_fresh_workspace_at_once(workers, backend, rounds, tmp_path,
                                                         request):
    from shipyard.store import Database
    from shipyard.store.migrations import HEAD

    specs = []
    for r in range(rounds):
        home = tmp_path / f"round{r}"
        url = (f"sqlite:///{home / 'shipyard.db'}" if backend == "sqlite"
               else _fresh_postgres_url(request.getfixturevalue("pg_server")))
        specs.append((str(home), url, str(home / "artifacts")))
    errors = [e for errs in race(workers, _open_each, [(specs,)] * WORKERS) for e in errs]
    assert not errors, f"{len(errors)} of {WORKERS * rounds} opens failed:\n" + \
        "\n".join(errors)
    for _, url, _ in specs:
        db = Database(url)
        assert db.current_revision() == HEAD
        db.dispose()
