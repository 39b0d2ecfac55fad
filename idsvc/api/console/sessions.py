"""The console's server-side sessions: a random id in an HttpOnly, SameSite=Strict cookie; everything else — whose key
signed in, its scope, the CSRF token, when it ends — stays on the server, in a small SQLite file in the home that
every worker of the host shares. The browser never holds the API key. Only the sha256 of a session id is stored, so
the file does not hand out sessions. A session ends when signed out, after ``idle_s`` without a request, after
``max_s`` in all, and as soon as its key is revoked (checked on every request, by the caller of ``get``)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from idsvc.results import Caller


@dataclass(frozen=True)
class Session:
    key_name: str
    scope: str
    csrf: str


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    def __init__(self, path: Path, *, idle_s: float, max_s: float) -> None:
        self.path, self.idle_s, self.max_s = path, idle_s, max_s
        self.local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con:
            con.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, key_name TEXT, scope TEXT, "
                        "csrf TEXT, started REAL, seen REAL)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def _con(self) -> sqlite3.Connection:
        con = getattr(self.local, "con", None)
        if con is None:
            con = self.local.con = self._connect()
        return con

    def start(self, caller: Caller) -> str:
        """A new session for a key that has just been checked; returns its id (the cookie's value)."""
        sid, now = secrets.token_urlsafe(32), time.time()
        con = self._con()
        con.execute("DELETE FROM sessions WHERE seen < ? OR started < ?", (now - self.idle_s, now - self.max_s))
        con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                    (_digest(sid), caller.name, caller.scope, secrets.token_urlsafe(32), now, now))
        return sid

    def get(self, sid: str | None) -> Session | None:
        """The live session ``sid`` names (its idle clock restarted), else None."""
        if not sid:
            return None
        now, con = time.time(), self._con()
        row = con.execute("SELECT key_name, scope, csrf, started, seen FROM sessions WHERE id = ?",
                          (_digest(sid),)).fetchone()
        if row is None or row[4] < now - self.idle_s or row[3] < now - self.max_s:
            return None
        con.execute("UPDATE sessions SET seen = ? WHERE id = ?", (now, _digest(sid)))
        return Session(key_name=row[0], scope=row[1], csrf=row[2])

    def end(self, sid: str | None) -> None:
        if sid:
            self._con().execute("DELETE FROM sessions WHERE id = ?", (_digest(sid),))
