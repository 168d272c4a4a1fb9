"""Micro-batching: concurrent requests to one version are merged into fewer
predict calls and each still gets its own answer."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from .conftest import LiveServer, record, toy_frame


def counting(loaded):
    calls = []
    original = loaded.predict

    def predict(frame):
        calls.append(len(frame))
        return original(frame)

    loaded.predict = predict
    return calls


def loaded_model(served):
    from shipyard.serve._slots import ModelSlot

    slot = ModelSlot(served[0], "toy@champion")
    slot.refresh()
    return slot.current


def test_concurrent_predictions_are_merged_and_split_back(served):
    from shipyard.serve._microbatch import MicroBatcher

    loaded = loaded_model(served)
    frames = [toy_frame(3, seed=i).drop(columns="y") for i in range(20)]
    sequential = [loaded.predict(f) for f in frames]
    calls = counting(loaded)
    batcher = MicroBatcher(max_batch_rows=512)

    async def main():
        return await asyncio.gather(*(batcher.predict(loaded, f) for f in frames))

    results = asyncio.run(main())
    assert len(calls) < len(frames) and sum(calls) == 60
    for got, want in zip(results, sequential, strict=True):
        np.testing.assert_array_equal(got.predictions, want.predictions)
        np.testing.assert_allclose(got.probabilities, want.probabilities)


def test_a_lone_request_is_not_delayed_and_batches_respect_max_rows(served):
    from shipyard.serve._microbatch import MicroBatcher

    loaded = loaded_model(served)
    calls = counting(loaded)
    batcher = MicroBatcher(max_batch_rows=4, max_wait_ms=50)

    async def main():
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.predict(loaded, toy_frame(1).drop(columns="y"))
        lone = loop.time() - start
        await asyncio.gather(*(batcher.predict(loaded, toy_frame(2, seed=i).drop(columns="y"))
                               for i in range(6)))
        return lone

    assert asyncio.run(main()) < 0.04
    assert calls[0] == 1 and max(calls) <= 4


def test_a_bad_request_fails_alone(served):
    from shipyard.serve._microbatch import MicroBatcher

    loaded = loaded_model(served)
    good = toy_frame(2).drop(columns="y")
    bad = good.assign(x0=["a", "b"])
    batcher = MicroBatcher()

    async def main():
        return await asyncio.gather(batcher.predict(loaded, good), batcher.predict(loaded, bad),
                                    return_exceptions=True)

    ok, failed = asyncio.run(main())
    assert len(ok.predictions) == 2 and isinstance(failed, Exception)


def test_the_server_merges_concurrent_requests(served):
    import httpx

    from shipyard.serve import create_app

    app = create_app(served[0], ["toy@champion"], auth=False, reload_interval=0,
                     prediction_log=False)
    rows = [record(x0=float(i) / 10, colour=["red", "blue"][i % 2]) for i in range(48)]
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        url = "/v1/models/toy:predict"
        sequential = [c.post(url, json={"records": [r]}).json()["probabilities"] for r in rows]
        batcher = app.state.serving.batcher
        before = (batcher.batches, batcher.requests)

        def one(r):
            with httpx.Client(base_url=server.url, timeout=30) as own:
                return own.post(url, json={"records": [r]}).json()["probabilities"]

        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(one, rows))
        batches, requests = batcher.batches - before[0], batcher.requests - before[1]
    assert requests == 48 and batches <= 48
    # float32 ONNX results may differ in the last bit with the batch they ran in
    np.testing.assert_allclose(np.array(concurrent), np.array(sequential), atol=1e-6)


def test_batching_can_be_turned_off(served):
    from shipyard.serve._microbatch import MicroBatcher

    loaded = loaded_model(served)
    calls = counting(loaded)
    batcher = MicroBatcher(enabled=False)

    async def main():
        frames = [pd.DataFrame([record()]) for _ in range(5)]
        await asyncio.gather(*(batcher.predict(loaded, f) for f in frames))

    asyncio.run(main())
    assert calls == [1] * 5
