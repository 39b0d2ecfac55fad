"""Cheap refusals: a request without a valid API key (refused before its body is read), a request body over its byte
limit (by Content-Length, and by counting when it is absent), a worker whose queue for the models is full (refused
before the body is read), and a token bucket per API key that every worker on the host shares."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, MutableMapping
from contextlib import closing
from pathlib import Path
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from idsvc.api.problems import problem
from idsvc.errors import IdsvcError, is_disk_full
from idsvc.results import Caller

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes: by Content-Length before reading, and by counting when it is absent
    (chunked uploads). A counted overrun answers 413 too — whatever the body parser would have said about the cut-off
    body is dropped in favour of it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = IdsvcError("too_large", f"request body is over {self.limit} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await problem(too_large, scope)(scope, receive, send)
        seen, over, started = 0, False, False

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen, over
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                over = True
                raise too_large
            return msg

        async def guarded(msg: MutableMapping[str, Any]) -> None:
            nonlocal started
            if over:
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await problem(too_large, scope)(scope, receive, send)
                return  # the app's own answer to the cut-off body is replaced by the 413
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, guarded)
        except IdsvcError:
            if not (over and not started):
                raise
            await problem(too_large, scope)(scope, receive, send)


#: Routes under /v1 that need no key.
OPEN_ROUTES = frozenset({"/v1/health", "/v1/ready"})


class KeyGate:
    """Refuse a /v1 request with no known, unrevoked key before anything reads its body: a stranger who can reach the
    port cannot make the server receive and parse 20 MB uploads. Wrong keys count against the client's address
    (``failures``: a bucket per address, shared by the workers); a client out of attempts is refused with 429 before
    its key is even looked up, so guessing keys costs the guesser, not the database. A request with no key at all is
    not a guess and always gets its 401 (which costs no lookup). The key's record is left in the
    request state, where the route's own dependency checks its scope and rate without looking it up again."""

    def __init__(self, app: ASGIApp, authenticate: Callable[[str | None], Caller],
                 failures: RateLimiter | None = None) -> None:
        self.app, self.authenticate, self.failures = app, authenticate, failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/v1/") and path not in OPEN_ROUTES:
            client = f"auth-failures:{(scope.get('client') or ('?', 0))[0]}"
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            kind, secret = get_authorization_scheme_param(auth)  # what HTTPBearer reads
            presented = secret if kind.lower() == "bearer" and secret else None
            counted = self.failures is not None and presented is not None  # no key at all is not a guess: 401
            try:
                if counted:
                    await asyncio.to_thread(self.failures.refuse_if_empty, client)  # type: ignore[union-attr]
                key = await asyncio.to_thread(self.authenticate, presented)
            except IdsvcError as exc:
                if exc.code == "unauthorized" and counted:
                    await asyncio.to_thread(self.failures.take, client)  # type: ignore[union-attr]
                return await problem(exc, scope)(scope, receive, send)
            scope.setdefault("state", {})["api_key"] = key
        await self.app(scope, receive, send)


class Admission:
    """The worker's queue for the models: requests to routes that use them (``counted``: each path with whether it is
    gathered) are counted from their arrival until their answer is sent. When ``limit`` are already waiting or
    running, the next is answered 503 ``overloaded`` with ``Retry-After`` before its body is read — at once, instead
    of waiting towards a 504. ``gathering`` counts the gathered ones (the gatherer's companions on their way). The
    arrival time is left in the request state: time limits count from it. Counted on the event loop's thread."""

    def __init__(self, app: ASGIApp, limit: int, counted: list[tuple[re.Pattern[str], bool]]) -> None:
        self.app, self.limit, self.counted = app, limit, counted
        self.waiting = self.gathering = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})["arrived"] = time.monotonic()
        path = scope.get("path", "")
        route = next((gathered for r, gathered in self.counted if r.fullmatch(path)), None)
        if scope.get("method") != "POST" or route is None:
            return await self.app(scope, receive, send)
        if self.waiting >= self.limit:
            busy = IdsvcError("overloaded", f"this worker has {self.waiting} requests waiting or running "
                              f"(IDSVC_API_QUEUE={self.limit}); try again shortly", retry_after=1)
            return await problem(busy, scope)(scope, receive, send)
        self.waiting += 1
        self.gathering += route
        try:
            await self.app(scope, receive, send)
        finally:
            self.waiting -= 1
            self.gathering -= route


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously, shared by every worker process of one
    host through a small SQLite file (one short write transaction per request). The clock is the system-wide
    monotonic one, so workers agree on it and a wall-clock jump changes nothing; a bucket from before a reboot
    (its time in the future) starts full."""

    def __init__(self, path: Path, per_minute: int) -> None:
        self.path = path
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            con.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, at REAL)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")  # losing the last moment's counts in a crash is harmless
        return con

    def check(self, key: str) -> None:
        """Take one token from ``key``'s bucket. Raises ``rate_limited`` when it is empty."""
        tokens = self._take(key, consume=True)
        if tokens < 1:
            raise self._limited(tokens, "too many requests for this API key")

    def take(self, key: str) -> None:
        """Take a token if there is one (counting a failure); never raises."""
        self._take(key, consume=True)

    def refuse_if_empty(self, key: str) -> None:
        """Raises ``rate_limited`` when ``key``'s bucket is empty, without taking a token."""
        tokens = self._take(key, consume=False)
        if tokens < 1:
            raise self._limited(tokens, "too many failed authentications from this address")

    def _take(self, key: str, *, consume: bool) -> float:
        """The bucket's tokens before this request (refilled to now), taking one when ``consume`` and there is one.
        On a full disk the count cannot be kept: the request is let through (a full bucket) rather than refused, so
        reads go on while an operator frees space; logged."""
        try:
            return self._take_or_raise(key, consume)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            log.warning("rate limits not counted: %s is on a full disk", self.path)
            self.local.con = None
            return self.capacity

    def _take_or_raise(self, key: str, consume: bool) -> float:
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = self._connect()
        now = time.monotonic()
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT tokens, at FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens, last = row if row and row[1] <= now else (self.capacity, now)
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if consume:
                con.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)",
                            (key, tokens - 1 if tokens >= 1 else tokens, now))
        finally:
            con.execute("COMMIT")
        return float(tokens)

    def _limited(self, tokens: float, why: str) -> IdsvcError:
        wait = math.ceil((1 - tokens) / self.rate) if self.rate else 60
        return IdsvcError("rate_limited", f"{why}; retry in {wait} s", retry_after=wait)
