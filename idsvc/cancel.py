"""Cooperative cancellation of one request's work, so that a request answered "timeout" has committed nothing.

A Python thread cannot be killed, so the HTTP API cannot abandon work that runs on: it would hold the model lock
(the next request times out too) and might commit after the client was told it failed. Instead the API gives each
request a ``Cancellation`` (a context variable, which ``asyncio.to_thread`` carries into the worker thread); the
library calls ``checkpoint()`` between units of work (one photo) and ``commit()`` right before its one commit. When
the time limit passes, the API cancels and *waits* for the thread: either it stops at its next checkpoint (nothing
committed: 504) or it had already begun to commit, in which case the cancel is refused and the request answers with
its real, late result. The CLI never sets one, so both calls cost a context-variable read there.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

from idsvc.errors import IdsvcError


class Cancellation:
    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._cancelled = False
        self._committing = False

    def cancel(self) -> bool:
        """Ask the work to stop; False when it has already begun to commit (it will finish)."""
        with self._lock:
            if not self._committing:
                self._cancelled = True
            return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise IdsvcError("timeout", f"request took longer than {self.limit_s:g} s; nothing was stored")

    def begin_commit(self) -> None:
        """From here on the work finishes; raises ``timeout`` instead if it was already cancelled."""
        with self._lock:
            self.check()
            self._committing = True


current: ContextVar[Cancellation | None] = ContextVar("idsvc_cancellation", default=None)


def checkpoint() -> None:
    """Raise ``timeout`` if this request was cancelled (and has not begun to commit)."""
    token = current.get()
    if token is not None and not token._committing:
        token.check()


def commit() -> None:
    """Mark the point of no return: after this the request's work completes even if its time runs out."""
    token = current.get()
    if token is not None:
        token.begin_commit()
