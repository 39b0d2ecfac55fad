"""Concurrent requests share passes through the models.

Searches, verifies, detects and embeds that arrive together in one worker are gathered into one call of the
service's batch operation — one decode-detect-embed pass, the encoders run on every face at once — and each request
gets its own items back. A batch search gives each photo the answer that photo alone gets (the pipeline's items are
independent of their neighbours; ``tests/test_serving.py`` compares them on real photos), so gathering changes how
fast an answer comes, never what it says.

One runner per worker takes the oldest waiting request and every other waiting request of the same kind and
parameters (``top_k``, threshold, …), up to ``IDSVC_API_BATCH`` photos, and runs them under the model lock (as a
reader: an enroll's next step waits for it). When it starts from idle while other model requests have arrived in the
worker (their bodies still being read), it waits up to ``IDSVC_API_BATCH_WAIT_MS`` for them; a lone request never
waits. While a batch runs, new arrivals queue and form the next one. Writes are never gathered, so they keep
their order.

Time limits count from each request's arrival. A request still waiting when its time runs out is taken out of the
queue and answered ``timeout``; a batch runs until the last of its requests' limits, then is cancelled at its next
checkpoint. If a batch fails as a whole (not one photo's error: those are items), each of its requests is run again
alone, so one request's bad input cannot become another's error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from idsvc import cancel
from idsvc.api import metrics
from idsvc.cancel import Cancellation, checkpoint
from idsvc.errors import IdsvcError
from idsvc.service import Service

#: ``run(service, inputs, params)`` → one output per input, in order.
Run = Callable[[Service, list[Any], Any], Sequence[Any]]


@dataclass(eq=False)
class _Ask:
    run: Run
    params: Hashable
    inputs: list[Any]
    deadline: float
    future: asyncio.Future[list[Any]]
    arrived: float = field(default_factory=time.monotonic)


class Gatherer:
    def __init__(self, service: Service, *, max_batch: int, wait_s: float, limit_s: float,
                 arrived: Callable[[], int] = lambda: 0) -> None:
        """``arrived``: how many model requests the worker has received (``Admission.waiting``), so the runner
        knows whether companions are on their way (their bodies still being read)."""
        self.service, self.max_batch, self.wait_s, self.limit_s = service, max_batch, wait_s, limit_s
        self.arrived = arrived
        self.pending: list[_Ask] = []
        self.runner: asyncio.Task[None] | None = None

    async def ask(self, run: Run, params: Hashable, inputs: list[Any], deadline: float) -> list[Any]:
        """``run``'s outputs for ``inputs``, computed together with whatever else of the same kind is waiting.
        ``deadline``: ``time.monotonic()`` by which the answer is due."""
        ask = _Ask(run, params, inputs, deadline, asyncio.get_running_loop().create_future())
        self.pending.append(ask)
        if self.runner is None or self.runner.done():
            self.runner = asyncio.ensure_future(self._run())
        try:
            return await asyncio.wait_for(asyncio.shield(ask.future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            if ask in self.pending:  # never started: nothing to wait for
                self.pending.remove(ask)
                raise self._timeout() from None
            return await ask.future  # its batch is running: it ends by the last of its requests' limits
        except asyncio.CancelledError:  # the server is stopping: a request not started yet is not started
            if ask in self.pending:
                self.pending.remove(ask)
            raise

    def _timeout(self) -> IdsvcError:
        return IdsvcError("timeout", f"request took longer than {self.limit_s:g} s; nothing was stored")

    async def _run(self) -> None:
        first = self.pending[0].arrived
        while self.arrived() > len(self.pending) and sum(len(a.inputs) for a in self.pending) < self.max_batch:
            left = first + self.wait_s - time.monotonic()  # companions are arriving: wait a little for them
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.001))
        while self.pending:
            await self._serve(self._take())

    def _take(self) -> list[_Ask]:
        """The oldest request and the others of its kind and parameters, in arrival order, up to the batch size."""
        head = self.pending[0]
        batch: list[_Ask] = []
        photos = 0
        for a in self.pending:
            if a.run is head.run and a.params == head.params and (not batch or photos + len(a.inputs)
                                                                   <= self.max_batch):
                batch.append(a)
                photos += len(a.inputs)
        for a in batch:
            self.pending.remove(a)
        return batch

    async def _serve(self, batch: list[_Ask]) -> None:
        try:
            outputs = await self._pass(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the requests, or each retried alone
            if len(batch) > 1 and not (isinstance(exc, IdsvcError) and exc.code == "timeout"):
                for a in batch:
                    await self._serve([a])
                return
            for a in batch:
                if not a.future.done():
                    a.future.set_exception(exc)
            return
        start = 0
        for a in batch:
            if not a.future.done():
                a.future.set_result(list(outputs[start:start + len(a.inputs)]))
            start += len(a.inputs)

    async def _pass(self, batch: list[_Ask]) -> Sequence[Any]:
        inputs = [x for a in batch for x in a.inputs]
        token = Cancellation(self.limit_s)
        busy = self.service.home.busy
        run, params = batch[0].run, batch[0].params

        def work() -> Sequence[Any]:
            cancel.current.set(token)
            with busy:
                checkpoint()
                out = run(self.service, inputs, params)
            if len(out) != len(inputs):
                raise IdsvcError("internal", f"a batch of {len(inputs)} gave {len(out)} answers")
            return out

        metrics.batched(len(inputs))
        job = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.wait_for(asyncio.shield(job),
                                          max(0.0, max(a.deadline for a in batch) - time.monotonic()))
        except TimeoutError:
            token.cancel()
            return await job  # stops at its next checkpoint (timeout) or finishes


# -- the operations that are gathered: service batch calls, one output per input ---------------------------------------
def search(s: Service, photos: list[Any], p: Any) -> list[Any]:
    top_k, all_faces, threshold, aligned = p
    return list(s.search(photos, top_k=top_k, all_faces=all_faces, threshold=threshold, aligned=aligned))


def verify(s: Service, pairs: list[Any], p: Any) -> list[Any]:
    threshold, aligned = p
    return list(s.verify(pairs, threshold=threshold, aligned=aligned))


def detect(s: Service, photos: list[Any], _: Any) -> list[Any]:
    return s.detect(photos).photos


def embed(s: Service, photos: list[Any], aligned: Any) -> list[Any]:
    return list(s.embed(photos, aligned=aligned))
