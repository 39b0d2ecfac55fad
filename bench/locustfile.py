"""A mixed workload for Locust against a running idsvc server (`bench/load.py` starts one and runs Locust headless).

Each simulated user, between short pauses: searches an LFW photo (most often), verifies a pair, lists identities,
enrolls one new photo, now and then enrolls ten at once (`POST /v1/enroll`). Photos are read once per process.
Environment: IDSVC_BENCH_KEY (a write key), IDSVC_BENCH_PHOTOS (a folder of people folders; the first photo of each
person is its probe, the rest are enrolled by the run).

    locust -f bench/locustfile.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000 --csv out/run
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from pathlib import Path

from locust import HttpUser, between, task

PHOTOS = Path(os.environ.get("IDSVC_BENCH_PHOTOS", "."))
KEY = os.environ.get("IDSVC_BENCH_KEY", "")
_people = sorted(d for d in PHOTOS.iterdir() if d.is_dir()) if PHOTOS.is_dir() else []
PROBES = [(p.name, p.read_bytes()) for d in _people for p in sorted(d.glob("*.jpg"))[:1]]
_fresh = [(d.name, p.name, p.read_bytes()) for d in _people for p in sorted(d.glob("*.jpg"))[1:]]
_next = itertools.count()
_lock = threading.Lock()


def fresh() -> tuple[str, str, bytes] | None:
    """A photo no user has enrolled yet (each is enrolled once, so every enroll stores something)."""
    with _lock:
        i = next(_next)
    return _fresh[i] if i < len(_fresh) else None


class Client(HttpUser):
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {KEY}"

    @task(12)
    def search(self) -> None:
        name, data = random.choice(PROBES)
        self.client.post("/v1/search", files={"file": (name, data, "image/jpeg")}, name="search")

    @task(4)
    def verify(self) -> None:
        (a, da), (b, db) = random.sample(PROBES, 2)
        self.client.post("/v1/verify", files={"a": (a, da, "image/jpeg"), "b": (b, db, "image/jpeg")},
                         name="verify")

    @task(4)
    def identities(self) -> None:
        self.client.get("/v1/identities", name="identities")

    @task(2)
    def enroll_one(self) -> None:
        photo = fresh()
        if photo is not None:
            person, name, data = photo
            self.client.post(f"/v1/identities/{person}/enroll", files={"files": (name, data, "image/jpeg")},
                             name="enroll (1 photo)")

    @task(1)
    def enroll_bulk(self) -> None:
        photos = [p for p in (fresh() for _ in range(10)) if p is not None]
        if photos:
            self.client.post("/v1/enroll", files=[("files", (f"{person}/{name}", data, "image/jpeg"))
                                                  for person, name, data in photos], name="enroll (10 photos)")
