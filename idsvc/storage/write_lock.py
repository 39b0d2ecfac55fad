"""The write lock: one writer at a time across the CLI, server workers, cron — and, on PostgreSQL, hosts.

It is the one thing a writer takes before it touches the registry, the crops or the index. With the embedded
registry (SQLite) a file lock in the home suffices: everything lives on one disk. With a PostgreSQL registry, homes
on different hosts share one database, so the lock is a PostgreSQL session advisory lock, held on a connection of
its own for the block and released by the server if the holder dies.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from idsvc.errors import IdsvcError
from idsvc.settings import Settings


def ensure_home(home: Path) -> Path:
    """Create the home folder if needed. Raises ``home_unwritable`` (a file in the way, a read-only place)."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IdsvcError("home_unwritable", f"cannot create the home {home}: {exc.strerror or exc}",
                         home=str(home)) from None
    return home


#: The advisory lock key every idsvc writer on one PostgreSQL database takes.
ADVISORY_KEY = zlib.crc32(b"idsvc-writer")


class WriteLock:
    def __init__(self, settings: Settings, engine: Callable[[], Any] | None = None) -> None:
        """``engine``: the registry's SQLAlchemy engine, when asked (used only when the registry is PostgreSQL)."""
        self.settings = settings
        self.engine = engine
        self._lock = FileLock(str(settings.lock_path), timeout=settings.lock_timeout_s)
        self._held = threading.local()  # advisory-lock depth per thread: re-entrant for a writer calling a writer

    @property
    def advisory(self) -> bool:
        return self.engine is not None and self.settings.db_url.startswith("postgresql")

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for a block (re-entrant within one process). Raises ``busy`` after ``timeout`` seconds
        (default: the setting; 0 = don't wait), ``home_unwritable`` when the home cannot hold a lock file."""
        wait = self.settings.lock_timeout_s if timeout is None else timeout
        if self.advisory:
            with self._advisory(wait):
                yield
            return
        home = ensure_home(self.settings.home)
        try:
            with self._lock.acquire(timeout=wait):
                yield
        except Timeout:
            raise IdsvcError("busy", f"another idsvc process is writing to {home}; try again later",
                             lock=str(self.settings.lock_path)) from None
        except PermissionError as exc:
            raise IdsvcError("home_unwritable", f"cannot take the write lock in {home}: {exc.strerror}",
                             home=str(home)) from None

    @contextmanager
    def _advisory(self, wait: float) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:  # this thread already holds it (a writer calling a writer)
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        if self.engine is None:
            raise IdsvcError("internal", "advisory lock without a registry engine")
        conn = self.engine().connect()
        try:
            deadline = time.monotonic() + wait
            while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({ADVISORY_KEY})").scalar():
                conn.rollback()
                if time.monotonic() >= deadline:
                    raise IdsvcError("busy", "another idsvc process is writing to this registry; try again later",
                                     lock=f"pg_advisory_lock({ADVISORY_KEY})")
                time.sleep(0.05)
            conn.commit()
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({ADVISORY_KEY})")
                conn.commit()
        finally:
            conn.close()
