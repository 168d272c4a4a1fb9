"""A dataset registration and its audit entry commit together or not at all."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from shipyard.errors import ExpectationsFailed
from shipyard.security import AuditLog
from shipyard.store.tables import DatasetRow, DatasetVersionRow


def _count(ws, row) -> int:
    with ws.db.read() as s:
        return s.execute(select(func.count()).select_from(row)).scalar()


def test_registration_appends_one_entry(workspace):
    v1 = workspace.datasets.register("sales", pd.DataFrame({"x": [1, 2]}), created_by="ana")
    workspace.datasets.register("sales", pd.DataFrame({"x": [1, 2]}))  # same content: no change
    v2 = workspace.datasets.register("sales", pd.DataFrame({"x": [1, 2, 3]}), parents=[v1])
    entries = workspace.audit.entries("dataset", "sales")
    assert [(e.action, e.details["version"]) for e in entries] == [
        ("dataset.register", 1), ("dataset.register", 2)]
    assert entries[0].actor == "ana"
    assert entries[0].details["content_hash"] == v1.content_hash
    assert entries[1].details["parents"] == ["sales@1"] and v2.version == 2
    assert workspace.audit.verify().ok


def test_refused_registration_appends_nothing(workspace):
    with pytest.raises(ExpectationsFailed):
        workspace.datasets.register("sales", pd.DataFrame({"x": [-1]}),
                                    expectations=[{"column": "x", "range": {"min": 0}}])
    assert workspace.audit.entries() == []


def test_failure_after_the_entry_rolls_both_back(workspace, monkeypatch):
    real = AuditLog.append

    def append_then_crash(self, session, **kwargs):
        real(self, session, **kwargs)  # version and entry are both flushed now
        raise RuntimeError("crash before commit")

    monkeypatch.setattr(AuditLog, "append", append_then_crash)
    with pytest.raises(RuntimeError):
        workspace.datasets.register("sales", pd.DataFrame({"x": [1]}))
    monkeypatch.undo()
    assert _count(workspace, DatasetRow) == 0 and _count(workspace, DatasetVersionRow) == 0
    assert workspace.audit.entries() == []
    assert workspace.datasets.register("sales", pd.DataFrame({"x": [1]})).version == 1
    assert len(workspace.audit.entries()) == 1
