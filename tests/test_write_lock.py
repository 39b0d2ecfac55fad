"""Writers on a PostgreSQL registry coordinate through the database (an advisory lock), not a file: two homes with
no shared folder — as on two hosts — exclude each other, and the lock is re-entrant within one writer."""

from __future__ import annotations

import threading
import time

import pytest

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.settings import load_settings


def test_two_homes_on_one_postgres_registry_exclude_each_other(tmp_path, pg_url):
    a = Home(load_settings(home=tmp_path / "host-a", db=pg_url))
    b = Home(load_settings(home=tmp_path / "host-b", db=pg_url))
    try:
        assert a.lock.advisory and b.lock.advisory
        with a.lock.hold():
            with a.lock.hold(timeout=0):  # a writer calling a writer
                pass
            with pytest.raises(IdsvcError) as err, b.lock.hold(timeout=0.3):
                pass
            assert err.value.code == "busy"
            got = []
            waiter = threading.Thread(target=lambda: got.append(_take(b)))
            waiter.start()
            time.sleep(0.3)
            assert not got  # still waiting for A
        waiter.join(timeout=10)
        assert got == ["taken"]  # A let go, B got it
        assert not (tmp_path / "host-a" / "write.lock").exists()  # no lock file: the database holds the lock
    finally:
        a.close()
        b.close()


def _take(home: Home) -> str:
    with home.lock.hold(timeout=10):
        return "taken"
