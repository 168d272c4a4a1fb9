"""The audit log on SQLite and PostgreSQL: chained appends, tamper detection,
atomicity with the caller's transaction, concurrency, export."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import threading

import pytest
from sqlalchemy import func, select, text, update

from shipyard import Workspace
from shipyard.errors import ShipyardError
from shipyard.security import (AuditError, AuditLog, entry_hash, read_jsonl, resolve_actor,
                               verify_chain)
from shipyard.store.tables import AuditEntryRow


def append(ws, n: int = 1, *, log: AuditLog | None = None, **kwargs):
    log = log or ws.audit
    out = []
    for i in range(n):
        args = {"actor": "ana", "action": "thing.change", "object_type": "thing",
                "object_id": f"t{i}", "reason": f"because {i}", "details": {"i": i}} | kwargs
        with ws.db.write() as session:
            out.append(log.append(session, **args))
    return out


def test_entries_chain_and_verify(workspace):
    entries = append(workspace, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    assert workspace.audit.entries() == entries
    result = workspace.audit.verify()
    assert result.ok and result.checked == 5 and result.head_hash == entries[-1].hash
    assert str(result).startswith("audit chain intact: 5 entries")


def test_empty_log_verifies(workspace):
    assert workspace.audit.verify().ok and workspace.audit.verify().checked == 0


def test_entries_filter_by_object_action_time_and_limit(workspace):
    append(workspace, 3)
    append(workspace, 1, action="other.thing", object_type="model", object_id="fraud")
    log = workspace.audit
    assert [e.seq for e in log.entries("model", "fraud")] == [4]
    assert [e.seq for e in log.entries("thing")] == [1, 2, 3]
    assert [e.seq for e in log.entries(action="thing")] == [1, 2, 3]
    assert [e.seq for e in log.entries(limit=2)] == [3, 4]
    third = log.entries()[2]
    assert [e.seq for e in log.entries(since=third.ts)] == [3, 4]
    assert log.entries()[0].details == {"i": 0}


def test_entry_commits_with_the_change_or_not_at_all(workspace):
    with pytest.raises(RuntimeError):
        with workspace.db.write() as session:
            workspace.audit.append(session, actor="ana", action="x.y", object_type="x",
                                   object_id="1")
            raise RuntimeError("the change failed")
    assert workspace.audit.entries() == []
    assert append(workspace)[0].seq == 1


def _tamper(ws, sql: str, **params) -> None:
    with ws.db.write() as session:
        session.execute(text(sql), params)


def test_edited_entry_is_reported_at_its_seq(workspace):
    append(workspace, 5)
    _tamper(workspace, "UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 3")
    result = workspace.audit.verify()
    assert not result.ok and result.broken_seq == 3 and "edited" in result.problem


def test_edited_details_are_detected(workspace):
    append(workspace, 3)
    with workspace.db.write() as session:
        session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 2)
                        .values(details={"i": 99}))
    assert workspace.audit.verify().broken_seq == 2


def test_edit_with_recomputed_hash_breaks_the_next_link(workspace):
    entries = append(workspace, 4)
    e = entries[1]
    forged = entry_hash(seq=e.seq, ts=e.ts, actor="mallory", action=e.action,
                        object_type=e.object_type, object_id=e.object_id, reason=e.reason,
                        details=e.details, prev_hash=e.prev_hash, keyed=False)
    _tamper(workspace, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE seq = 2",
            h=forged)
    result = workspace.audit.verify()
    assert result.broken_seq == 3 and "prev_hash" in result.problem


@pytest.mark.parametrize("deleted, reported", [(3, 3), (1, 1)])
def test_deleted_entry_is_detected(workspace, deleted, reported):
    append(workspace, 5)
    _tamper(workspace, "DELETE FROM audit_log WHERE seq = :s", s=deleted)
    result = workspace.audit.verify()
    assert not result.ok and result.broken_seq == reported and "missing" in result.problem


def test_renumbered_entries_after_a_deletion_are_detected(workspace):
    append(workspace, 4)
    _tamper(workspace, "DELETE FROM audit_log WHERE seq = 2")
    _tamper(workspace, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _tamper(workspace, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    result = workspace.audit.verify()
    assert not result.ok and result.broken_seq == 2


def test_reordered_entries_are_detected(workspace):
    append(workspace, 4)
    _tamper(workspace, "UPDATE audit_log SET seq = -1 WHERE seq = 2")
    _tamper(workspace, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _tamper(workspace, "UPDATE audit_log SET seq = 3 WHERE seq = -1")
    result = workspace.audit.verify()
    assert not result.ok and result.broken_seq == 2


def test_keyed_chain_needs_the_key(workspace):
    keyed = AuditLog(workspace, key=b"s3cret")
    entries = append(workspace, 3, log=keyed)
    assert all(e.keyed for e in entries)
    assert keyed.verify().ok and keyed.verify().keyed_from == 1
    assert AuditLog(workspace, key=b"guess").verify().broken_seq == 1
    unkeyed = AuditLog(workspace, key=None).verify()
    assert not unkeyed.ok and "SHIPYARD_AUDIT_KEY" in unkeyed.problem


def test_keyed_chain_resists_a_recomputed_chain(workspace):
    keyed = AuditLog(workspace, key=b"s3cret")
    append(workspace, 3, log=keyed)
    # Without the key the forger can only write unkeyed hashes: a downgrade.
    rows = keyed.entries()
    prev = rows[0].hash
    for e in rows[1:]:
        reason = "rewritten" if e.seq == 2 else e.reason
        h = entry_hash(seq=e.seq, ts=e.ts, actor=e.actor, action=e.action,
                       object_type=e.object_type, object_id=e.object_id, reason=reason,
                       details=e.details, prev_hash=prev, keyed=False)
        _tamper(workspace, "UPDATE audit_log SET reason = :r, keyed = :k, prev_hash = :p, "
                           "hash = :h WHERE seq = :s",
                r=reason, k=False, p=prev, h=h, s=e.seq)
        prev = h
    result = keyed.verify()
    assert result.broken_seq == 2 and "not keyed" in result.problem


def test_key_comes_from_the_environment(workspace, monkeypatch):
    monkeypatch.setenv("SHIPYARD_AUDIT_KEY", "from-env")
    log = AuditLog(workspace)
    assert append(workspace, log=log)[0].keyed
    assert log.verify().ok


def test_export_jsonl_verifies_offline_and_shows_tampering(workspace, tmp_path):
    append(workspace, 4)
    path = tmp_path / "audit.jsonl"
    assert workspace.audit.export_jsonl(path) == 4
    assert verify_chain(read_jsonl(path)).ok
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["reason"] = "changed"
    lines[1] = json.dumps(record)
    assert verify_chain(read_jsonl(io.StringIO("\n".join(lines)))).broken_seq == 2
    buffer = io.StringIO()
    assert workspace.audit.export_jsonl(buffer) == 4
    assert buffer.getvalue() == path.read_text()


def test_concurrent_appends_from_threads_keep_the_chain(workspace):
    def worker(k: int) -> None:
        for i in range(15):
            workspace.db.retry(lambda s: workspace.audit.append(
                s, actor=f"w{k}", action="thing.change", object_type="thing",
                object_id=f"{k}-{i}"))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = workspace.audit.verify()
    assert result.ok and result.checked == 60


def _append_from_process(args) -> None:
    home, worker, n = args
    ws = Workspace.open(home)
    for i in range(n):
        ws.db.retry(lambda s: ws.audit.append(s, actor=f"p{worker}", action="thing.change",
                                               object_type="thing", object_id=f"{worker}-{i}"))
    ws.close()


def test_concurrent_appends_from_four_processes_on_sqlite(tmp_path):
    Workspace.open(tmp_path).close()
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_append_from_process, [(str(tmp_path), k, 25) for k in range(4)])
    ws = Workspace.open(tmp_path)
    result = ws.audit.verify()
    assert result.ok and result.checked == 100
    assert {e.actor for e in ws.audit.entries()} == {"p0", "p1", "p2", "p3"}
    ws.close()


def test_unique_seq_is_the_backstop(workspace):
    append(workspace)
    with pytest.raises(Exception), workspace.db.write() as session:
        session.add(AuditEntryRow(seq=1, ts=0.0, actor="x", action="x", object_type="x",
                                  object_id="x", keyed=False, prev_hash="0" * 64,
                                  hash="0" * 64))
    with workspace.db.read() as session:
        assert session.execute(select(func.count()).select_from(AuditEntryRow)).scalar() == 1


def test_actor_is_explicit_then_env_then_os_user(monkeypatch):
    import getpass

    monkeypatch.delenv("SHIPYARD_ACTOR", raising=False)
    assert resolve_actor("ana") == "ana"
    assert resolve_actor() == getpass.getuser()
    monkeypatch.setenv("SHIPYARD_ACTOR", "ci-bot")
    assert resolve_actor() == "ci-bot" and resolve_actor("ana") == "ana"


@pytest.mark.parametrize("kwargs", [
    {"actor": ""}, {"actor": "a" * 201}, {"actor": "a\nb"}, {"actor": 5},
    {"action": ""}, {"object_id": "x" * 501}, {"reason": "x\x00"}, {"reason": 3},
    {"details": {"x": float("nan")}}, {"details": {"x": object()}}, {"details": [1]},
])
def test_invalid_entries_are_refused_and_nothing_is_written(workspace, kwargs):
    with pytest.raises(AuditError):
        append(workspace, **kwargs)
    assert workspace.audit.entries() == []
    assert issubclass(AuditError, ShipyardError)
