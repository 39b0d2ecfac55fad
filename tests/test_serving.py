"""Serving under load (issue 28), on a real server on 127.0.0.1 with real photos: reads that need no model never wait
for model work, no request holds the models while it waits for another process's write lock, and a full queue is
answered 503 ``overloaded`` at once."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from idsvc.settings import load_settings
from tests.conftest import LFW, make_keys

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def upload(paths: list[Path], field: str = "files") -> list:
    return [(field, (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def people_photos(count: int) -> list[Path]:
    """``count`` LFW photos of people with several photos each (for bulk enrolls)."""
    out: list[Path] = []
    for d in sorted(LFW.iterdir()):
        out += sorted(d.glob("*.jpg"))[:4]
        if len(out) >= count:
            return out[:count]
    return out


def test_a_request_waiting_for_the_write_lock_holds_no_model(tmp_path: Path, live_server) -> None:
    """Another process holds the home's write lock for 8 s (a CLI enroll, a reindex). An API enroll arriving then
    waits for it — without the worker's models, so searches on the same worker are answered meanwhile, and listings
    never wait at all."""
    s = load_settings(home=tmp_path / "home", device="cpu")
    keys = make_keys(s.home)
    base = live_server(s)
    w = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['write']}"}, timeout=120)
    r = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['read']}"}, timeout=120)
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    assert w.post("/v1/identities/colin/enroll", files=upload([colin[0]])).status_code == 200
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom idsvc.settings import load_settings\nfrom idsvc.storage.write_lock import WriteLock\n"
        f"with WriteLock(load_settings(home={str(s.home)!r})).hold():\n    print('held', flush=True)\n"
        "    time.sleep(8)\n")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    t_held = time.monotonic()
    enrolled: dict[str, httpx.Response] = {}
    writer = threading.Thread(target=lambda: enrolled.update(
        res=w.post("/v1/identities/colin/enroll", files=upload([colin[4], colin[6]]))))  # one face each
    writer.start()
    time.sleep(1.0)  # the enroll has read and embedded its photos, and waits for the lock
    searches, listings = [], []
    while time.monotonic() - t_held < 6:
        t0 = time.perf_counter()
        res = r.post("/v1/search", files=upload([colin[7]], "file"))
        searches.append(time.perf_counter() - t0)
        assert res.status_code == 200 and res.json()["identity"] == "colin", res.text
        t0 = time.perf_counter()
        assert r.get("/v1/identities").status_code == 200
        listings.append(time.perf_counter() - t0)
    assert len(searches) >= 4 and max(searches) < 2.0, searches  # before: the first search waited the 8 s out
    assert writer.is_alive(), "the enroll did not wait for the write lock: the test proves nothing"
    holder.wait(timeout=30)
    writer.join(timeout=120)
    assert enrolled["res"].status_code == 200 and len(enrolled["res"].json()["accepted"]) == 2, enrolled["res"].text
    # a listing never waits for the model or the write lock (before: behind the 8 s hold); the 250 ms budget is
    # measured in bench/serving.py, where load is stated — a timed bound here fails on a busy CI core
    assert max(listings) < 2.0, listings
    print(f"\nwrite lock held 8 s elsewhere, an API enroll waiting for it: {len(searches)} searches answered meanwhile "
          f"(max {max(searches) * 1000:.0f} ms), listings max {max(listings) * 1000:.0f} ms")


def test_listings_do_not_wait_for_a_bulk_enroll(tmp_path: Path, live_server) -> None:
    s = load_settings(home=tmp_path / "home", device="cpu")
    keys = make_keys(s.home)
    base = live_server(s)
    w = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['write']}"}, timeout=300)
    r = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['read']}"}, timeout=60)
    photos = people_photos(40)
    done: dict = {}

    def enroll() -> None:
        t0 = time.perf_counter()
        done["res"] = w.post("/v1/enroll", files=[("files", (f"{p.parent.name}/{p.name}", p.read_bytes(),
                                                              "image/jpeg")) for p in photos])
        done["took"] = time.perf_counter() - t0

    assert r.get("/v1/identities").status_code == 200  # the server's first request (opening the registry) is not
    # what is measured: a CI run once took 0.57 s for it
    bulk = threading.Thread(target=enroll)
    bulk.start()
    times = []
    while bulk.is_alive():
        t0 = time.perf_counter()
        assert r.get("/v1/identities").status_code == 200
        times.append(time.perf_counter() - t0)
        time.sleep(0.05)
    assert done["res"].status_code == 200, done["res"].text
    # before: a listing queued behind the whole enroll. Each must be answered in a part of it (the 250 ms budget is
    # measured in bench/serving.py; a timed bound here fails on a busy CI core)
    assert len(times) >= 5 and max(times) < done["took"] / 2, (done["took"], times)
    print(f"\nGET /v1/identities during a 40-photo bulk enroll: {len(times)} answers, max {max(times) * 1000:.0f} ms")


def test_a_full_queue_is_answered_overloaded_at_once(tmp_path: Path, live_server) -> None:
    """IDSVC_API_QUEUE=2: of 8 searches sent at once, those past the queue are 503 ``overloaded`` with Retry-After,
    answered at once; none is a 504; the others are answered."""
    s = load_settings(home=tmp_path / "home", device="cpu", api_queue=2)
    keys = make_keys(s.home)
    base = live_server(s)
    headers = {"Authorization": f"Bearer {keys['write']}"}
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    assert httpx.post(f"{base}/v1/identities/colin/enroll", headers=headers, files=upload([colin[0]]),
                      timeout=120).status_code == 200

    def search(_: int) -> tuple[int, float, httpx.Response]:
        t0 = time.perf_counter()
        res = httpx.post(f"{base}/v1/search", headers=headers, files=upload([colin[5]], "file"), timeout=120)
        return res.status_code, time.perf_counter() - t0, res

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(search, range(8)))
    refused = [(t, res) for code, t, res in answers if code == 503]
    assert {code for code, *_ in answers} <= {200, 503}, [a[0] for a in answers]
    assert refused and len(refused) < 8, [a[0] for a in answers]
    for _, res in refused:
        assert res.json()["code"] == "overloaded" and res.headers["retry-after"] == "1"
        assert res.headers["content-type"] == "application/problem+json"
    # at once: before, they queued behind every search (seconds); the 100 ms figure is measured in bench/serving.py
    assert max(t for t, _ in refused) < 1.0, [t for t, _ in refused]
    print(f"\nqueue 2, 8 searches at once: {8 - len(refused)} answered, {len(refused)} overloaded in at most "
          f"{max(t for t, _ in refused) * 1000:.0f} ms")
