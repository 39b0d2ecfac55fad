"""A request id for every request: the caller's ``X-Request-ID`` when it is a short token, else a new one. It is in
every response's ``X-Request-ID`` header, in every problem document and in the error log, so one failed call can be
found in the server's log.

It is also the last guard: anything that escapes the layers inside it (a middleware's own failure, which FastAPI's
handlers never see) is answered as a problem document with its stable code — ``database_unavailable`` when the
registry went away, else ``internal`` — never uvicorn's bare ``text/plain`` 500."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        started = False

        async def tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        except Exception as exc:
            if started:  # a body was on its way: nothing can be said in its place
                raise
            from idsvc.api.problems import problem, unexpected_error

            await problem(unexpected_error(exc, rid), scope)(scope, receive, tagged)
