"""Model slots: alias moves swap the model atomically; in-flight requests keep
theirs."""

from __future__ import annotations

import httpx
import pytest

from shipyard.errors import ConfigError
from shipyard.serve import ModelSlots, ServeError

from .conftest import LiveServer, bearer, record


@pytest.fixture(scope="module")
def swap(served):
    """Model ``swap``: versions 1 and 2 from different runs, champion at 1."""
    ws, runs = served
    for run in runs:
        ws.models.register("swap", run)
    ws.models.set_alias("swap", "champion", 1, actor="tests")
    return ws


def test_alias_move_publishes_the_new_version_and_old_holders_keep_theirs(swap):
    slots = ModelSlots(swap, ["swap@champion"], reload_interval=0)
    slots.load()
    held = slots.get("swap").pick()
    assert held.number == 1 and slots.ready
    assert slots.refresh() == {"swap": False}
    swap.models.set_alias("swap", "champion", 2, actor="tests")
    try:
        assert slots.refresh() == {"swap": True}
        assert slots.get("swap").pick().number == 2
        assert held.number == 1 and held.model is not slots.get("swap").pick().model
    finally:
        swap.models.set_alias("swap", "champion", 1, actor="tests")


def test_polling_follows_the_alias(swap):
    import time

    slots = ModelSlots(swap, ["swap@champion"], reload_interval=0.05)
    slots.load()
    slots.start()
    try:
        swap.models.set_alias("swap", "champion", 2, actor="tests")
        deadline = time.monotonic() + 5
        while slots.get("swap").pick().number != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert slots.get("swap").pick().number == 2
    finally:
        slots.stop()
        swap.models.set_alias("swap", "champion", 1, actor="tests")


def test_admin_reload_endpoint_switches_versions(swap, keys):
    from shipyard.serve import create_app

    app = create_app(swap, ["swap@champion"], reload_interval=0, prediction_log=False)
    with LiveServer(app) as server, httpx.Client(base_url=server.url) as c:
        def version():
            return c.post("/v1/models/swap:predict", json={"records": [record()]},
                          headers=bearer(keys["predict"])).json()["model_version"]

        assert version() == 1
        swap.models.set_alias("swap", "champion", 2, actor="tests")
        try:
            r = c.post("/v1/admin/reload", headers=bearer(keys["admin"]))
            assert r.json() == {"changed": {"swap": True}, "versions": {"swap": 2}}
            assert version() == 2
        finally:
            swap.models.set_alias("swap", "champion", 1, actor="tests")


def test_unknown_names_and_duplicate_refs(swap):
    slots = ModelSlots(swap, ["swap@champion", "toy"], reload_interval=0)
    with pytest.raises(ServeError, match="served models: swap, toy"):
        slots.get("other")
    with pytest.raises(ServeError, match="not loaded yet"):
        slots.get("toy").pick()
    with pytest.raises(ConfigError, match="serve one ref per model name"):
        ModelSlots(swap, ["swap@1", "swap@2"])
