"""The web console at ``/console`` for the people who look after a gallery: browse identities and their crops, enroll
by dropping photos or a folder of people folders, search and verify with the faces and crops side by side, status.

Server-rendered (Jinja2) with one small script and one stylesheet, all inside the package: no CDN, no build step.
Sign in with an API key; the server keeps the session (``sessions``); the browser holds only an HttpOnly,
SameSite=Strict cookie. Every response carries a strict Content-Security-Policy (no inline script or style), and
crops are served by template id to a signed-in session only. ``idsvc serve --no-console`` (``IDSVC_CONSOLE=false``)
leaves it out.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idsvc.api.console.pages import SignInFirst, router
from idsvc.api.console.sessions import Sessions
from idsvc.api.limits import RateLimiter
from idsvc.settings import Settings

#: Only this server's own files; no inline script or style; images also from data: URLs (the photo just searched).
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]


def install(app: FastAPI, settings: Settings, failures: RateLimiter) -> None:
    """The console's routes, files and session store on ``app``; ``failures``: the key gate's buckets of wrong keys
    per address, which sign-in counts against too."""
    app.state.console_sessions = Sessions(settings.home / "console-sessions.sqlite3",
                                          idle_s=settings.console_idle_s, max_s=settings.console_max_s)
    app.state.console_failures = failures
    app.include_router(router)
    static = resources.files("idsvc.api.console") / "static"
    app.mount("/console/static", StaticFiles(directory=str(static)), name="console-static")

    async def sign_in_first(request: Request, _: Exception) -> RedirectResponse:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = back if request.method == "GET" else "/console/identities"
        from urllib.parse import quote

        return RedirectResponse(f"/console/sign-in?next={quote(target, safe='')}", status_code=303)

    app.add_exception_handler(SignInFirst, sign_in_first)


class ConsoleHeaders:
    """ASGI middleware: the CSP and its companions on every /console response (pages, redirects, errors, files);
    pages are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/console" or path.startswith("/console/")):
            return await self.app(scope, receive, send)
        static = path.startswith("/console/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dict(HEADERS)]
                headers += HEADERS
                if not static and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
