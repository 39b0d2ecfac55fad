"""The cross-process write lock of an embedded home: one writer at a time across the CLI, server workers and cron.

A file lock suffices while the registry and index live on one disk; it is the one thing a writer takes before it
touches the registry, the crops or the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


class WriteLock:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = FileLock(str(settings.lock_path), timeout=settings.lock_timeout_s)

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for a block. Raises ``busy`` after ``timeout`` seconds (default: the setting; 0 = don't
        wait), ``home_unwritable`` when the home cannot hold a lock file."""
        home = ensure_home(self.settings.home)
        wait = self.settings.lock_timeout_s if timeout is None else timeout
        try:
            with self._lock.acquire(timeout=wait):
                yield
        except Timeout:
            raise IdsvcError("busy", f"another idsvc process is writing to {home}; try again later",
                             lock=str(self.settings.lock_path)) from None
        except PermissionError as exc:
            raise IdsvcError("home_unwritable", f"cannot take the write lock in {home}: {exc.strerror}",
                             home=str(home)) from None
