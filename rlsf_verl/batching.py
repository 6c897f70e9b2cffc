"""Micro-batching: concurrent async requests answered by one batched call of a blocking function.

The ``hf_cpu`` rollout (generation), its reward server (``/classify``) and the self-confidence
manager's local scorer all serve one request per caller from a model that is much faster on a
batch; :class:`MicroBatcher` collects the requests that arrive together and hands each caller its
own result. Hand-written: Ray Serve's ``@serve.batch`` needs ``ray[serve]`` (not installed by verl)
and has no grouping, and vLLM's batching lives inside its engine.

>>> import asyncio
>>> batcher = MicroBatcher(lambda words: [word.upper() for word in words], max_size=2)
>>> async def ask_three():
...     return await asyncio.gather(*(batcher.submit(word) for word in ["a", "b", "c"]))
>>> asyncio.run(ask_three())  # two calls: ["a", "b"], then ["c"]
['A', 'B', 'C']
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


class MicroBatcher(Generic[Request, Result]):
    """Collects concurrent :meth:`submit` calls into batches for ``run``: a blocking function from a
    list of requests to their results, in the same order. It runs in a worker thread, so requests
    keep arriving (and queue for the next batch) while the model works.

    A batch starts with the oldest waiting request, waits ``max_wait_s`` for others to join (not when
    ``max_size`` already wait), and takes at most ``max_size`` of them (None: all). ``key`` splits a
    batch into groups that cannot share a call (e.g. different sampling parameters); the groups run
    one after another. An exception from ``run`` reaches every caller of that call, and the next
    batch is served as usual. A caller that is cancelled leaves its batch; the others are answered.
    """

    def __init__(
        self,
        run: Callable[[list[Request]], Sequence[Result]],
        *,
        max_size: int | None = None,
        max_wait_s: float = 0.0,
        key: Callable[[Request], Hashable] | None = None,
    ):
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size={max_size}: must be at least 1, or None for no limit")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s={max_wait_s}: must be >= 0 seconds")
        self.run = run
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.key = key
        self._waiting: list[tuple[Request, asyncio.Future]] = []
        self._serving: asyncio.Task | None = None

    async def submit(self, request: Request) -> Result:
        """``request``'s result, computed in a batch with the requests submitted around it."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._serving is None or self._serving.done():
            # a task of its own: cancelling the caller who started it stops no one else's batch
            self._serving = asyncio.create_task(self._serve())
        return await future

    async def close(self) -> None:
        """Stop serving: the batch in progress and every waiting request are cancelled."""
        if self._serving is not None and not self._serving.done():
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving

    async def _serve(self) -> None:
        batch: list[tuple[Request, asyncio.Future]] = []
        try:
            while self._waiting:
                if self.max_size is None or len(self._live()) < self.max_size:
                    await asyncio.sleep(self.max_wait_s)  # let concurrent requests join this batch
                waiting = self._live()
                size = len(waiting) if self.max_size is None else self.max_size
                batch, self._waiting = waiting[:size], waiting[size:]
                for group in self._groups(batch):
                    await self._call(group)
                batch = []
        finally:  # cancelled (close(), or the event loop shutting down): no caller may wait forever
            for _, future in batch + self._waiting:
                future.cancel()
            self._waiting = []

    def _live(self) -> list[tuple[Request, asyncio.Future]]:
        """The waiting requests whose callers still wait (a cancelled caller leaves a done future)."""
        self._waiting = [(request, future) for request, future in self._waiting if not future.done()]
        return self._waiting

    def _groups(self, batch: list[tuple[Request, asyncio.Future]]) -> list[list[tuple[Request, asyncio.Future]]]:
        if self.key is None:
            return [batch] if batch else []
        groups: dict[Hashable, list[tuple[Request, asyncio.Future]]] = {}
        for request, future in batch:
            groups.setdefault(self.key(request), []).append((request, future))
        return list(groups.values())

    async def _call(self, group: list[tuple[Request, asyncio.Future]]) -> None:
        requests = [request for request, _ in group]
        try:
            results = await asyncio.to_thread(self.run, requests)
            if len(results) != len(requests):
                raise RuntimeError(f"{self.run!r} returned {len(results)} results for {len(requests)} requests")
        except Exception as error:  # every caller of this call gets the failure instead of hanging
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)
