"""The lock a process's threads take to use the models and the in-memory index, reads first.

The networks and the FAISS object are not shared across threads, so one thread uses them at a time. A request that
answers a question (search, verify, detect, embed) takes it whole (``with lock:``); an enroll takes it a step at a time
(``with lock.step():`` — a few photos detected or embedded) and lets every waiting request go before its next step.
So a search that arrives during a bulk enroll waits for one step, not for the enroll. Re-entrant: a thread that holds
it may take it again. Lock order (``Home.busy``): the home's write lock first, then this one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ModelLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._first_waiting = 0  # requests waiting: a step does not start while there is one

    def __enter__(self) -> ModelLock:
        self._acquire(first=True)
        return self

    def __exit__(self, *_: object) -> None:
        self._release()

    @contextmanager
    def step(self) -> Iterator[None]:
        """One step of a long job, after every request that is waiting."""
        self._acquire(first=False)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, *, first: bool) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            if first:
                self._first_waiting += 1
            try:
                while self._owner is not None or (not first and self._first_waiting):
                    self._cond.wait()
            finally:
                if first:
                    self._first_waiting -= 1
            self._owner, self._depth = me, 1

    def _release(self) -> None:
        with self._cond:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._cond.notify_all()
