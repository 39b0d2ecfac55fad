"""Cheap refusals: a request body over its byte limit (by Content-Length, and by counting when it is absent), and a
token bucket per API key."""

from __future__ import annotations

import threading
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from idsvc.api.problems import problem
from idsvc.errors import IdsvcError


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (by Content-Length, and by counting when it is absent)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            return await problem(IdsvcError("too_large", f"request body is over {self.limit} bytes"))(
                scope, receive, send)
        seen = 0

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise IdsvcError("too_large", f"request body is over {self.limit} bytes")
            return msg

        await self.app(scope, counted, send)


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self.lock:
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                raise IdsvcError("rate_limited", "too many requests for this API key; slow down")
            self.buckets[key] = (tokens - 1, now)
