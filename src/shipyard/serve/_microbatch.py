"""Adaptive micro-batching: concurrent small requests to the same model
version are scored by one ``predict`` over their concatenated rows.

One lane (a queue and at most one draining task) per loaded version. A request
joins its lane's queue; if no task drains the lane it starts one. The task
yields to the event loop once, so requests already readable on other
connections can join, then takes whatever waits (up to ``max_batch_rows``).
It waits longer, at most ``max_wait_ms``, only when the previous batch merged
several requests (concurrency was seen) and fewer than that many wait now: a
lone request pays no delay, and under steady load batches fill to the number
of concurrent clients. A batch whose ``predict`` fails is retried request by
request, so a bad input fails only its own request.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.deploy import LoadedModel, Prediction

#: Up to this many rows a batch runs on the event loop: a thread hop costs
#: about as much as predicting one small row. Larger ones go to a thread.
INLINE_ROWS = 64


@dataclass(eq=False)
class _Lane:
    queue: list[tuple[pd.DataFrame, asyncio.Future]] = field(default_factory=list)
    rows: int = 0
    draining: bool = False
    last_batch: int = 1
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class MicroBatcher:
    """Coalesces concurrent predictions of one version into one ``predict``.

    Parameters
    ----------
    enabled
        False predicts each request on its own.
    max_batch_rows
        Most rows one merged ``predict`` holds (a larger single request still
        runs, alone).
    max_wait_ms
        Longest a batch waits for more requests, and only under concurrency.
    """

    def __init__(self, *, enabled: bool = True, max_batch_rows: int = 512,
                 max_wait_ms: float = 2.0):
        self.enabled, self.max_batch_rows, self.max_wait_ms = enabled, max_batch_rows, max_wait_ms
        self._lanes: weakref.WeakKeyDictionary[LoadedModel, _Lane] = weakref.WeakKeyDictionary()
        #: Merged predict calls and the requests they answered (for metrics and tests).
        self.batches = 0
        self.requests = 0

    def __repr__(self) -> str:
        return (f"MicroBatcher(enabled={self.enabled}, max_batch_rows={self.max_batch_rows}, "
                f"max_wait_ms={self.max_wait_ms})")

    async def predict(self, loaded: LoadedModel, frame: pd.DataFrame) -> Prediction:
        """``loaded.predict(frame)``, possibly merged with concurrent requests."""
        if not self.enabled:
            self.batches += 1
            self.requests += 1
            return await _run(loaded, frame)
        lane = self._lanes.get(loaded)
        if lane is None:
            lane = self._lanes[loaded] = _Lane()
        future = asyncio.get_running_loop().create_future()
        lane.queue.append((frame, future))
        lane.rows += len(frame)
        lane.arrived.set()
        if not lane.draining:
            lane.draining = True
            asyncio.create_task(self._drain(loaded, lane))
        return await future

    async def _drain(self, loaded: LoadedModel, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        try:
            while lane.queue:
                await asyncio.sleep(0)
                if lane.last_batch > 1:
                    deadline = loop.time() + self.max_wait_ms / 1000
                    while len(lane.queue) < lane.last_batch and lane.rows < self.max_batch_rows:
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        lane.arrived.clear()
                        try:
                            await asyncio.wait_for(lane.arrived.wait(), left)
                        except TimeoutError:
                            break
                batch, rows = [], 0
                while lane.queue and (not batch or
                                      rows + len(lane.queue[0][0]) <= self.max_batch_rows):
                    item = lane.queue.pop(0)
                    batch.append(item)
                    rows += len(item[0])
                lane.rows -= rows
                lane.last_batch = len(batch)
                await self._score(loaded, batch)
        finally:
            lane.draining = False

    async def _score(self, loaded: LoadedModel, batch: list) -> None:
        self.batches += 1
        self.requests += len(batch)
        if len(batch) == 1:
            frame, future = batch[0]
            await _settle(future, loaded, frame)
            return
        import pandas as pd

        from shipyard.deploy import Columns

        try:
            frames = [f for f, _ in batch]
            merged = (Columns.concat(frames) if all(isinstance(f, Columns) for f in frames)
                      else pd.concat([f.to_frame() if isinstance(f, Columns) else f
                                      for f in frames], ignore_index=True))
            result = await _run(loaded, merged)
        except Exception:  # noqa: BLE001 -- find the request at fault: each alone
            self.batches += len(batch) - 1
            for frame, future in batch:
                await _settle(future, loaded, frame)
            return
        start = 0
        for frame, future in batch:
            end = start + len(frame)
            if not future.done():
                future.set_result(_slice(result, start, end))
            start = end


async def _run(loaded: LoadedModel, frame: pd.DataFrame) -> Prediction:
    if len(frame) <= INLINE_ROWS:
        return loaded.predict(frame)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(loaded.predict, frame)


async def _settle(future: asyncio.Future, loaded: LoadedModel, frame: pd.DataFrame) -> None:
    try:
        result = await _run(loaded, frame)
    except Exception as exc:  # noqa: BLE001 -- handed to the request that sent it
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)


def _slice(result: Any, start: int, end: int) -> Prediction:
    from shipyard.deploy import Prediction

    proba = result.probabilities
    return Prediction(result.predictions[start:end],
                      None if proba is None else proba[start:end], result.classes)
