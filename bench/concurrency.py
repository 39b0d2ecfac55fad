"""Concurrent searches on one `idsvc serve` worker (issue 28's second and third "done when"), in one run:

1. throughput of one client searching back to back, and of eight clients at once, each on its own LFW photos —
   with gathering (the default, `IDSVC_API_BATCH=16`) and without it (`IDSVC_API_BATCH=1`, every request its own
   pass, as before), on two servers started in turn;
2. over capacity (`IDSVC_API_QUEUE=2`, 24 searches sent at once): how fast the refusals come, and that none is a 504.

Medians of `--rounds` rounds; every status is counted.

    python bench/concurrency.py [--rounds 3] [--requests 96]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table, wait_ready
from idsvc.settings import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
LFW = SHARED_DATA / "lfw" / "images"


@contextmanager
def server(home: Path, **env: str) -> Iterator[tuple[str, dict[str, str]]]:
    """One worker over ``home`` with extra ``IDSVC_*`` settings: (base URL, auth header)."""
    key = json.loads(subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "--json", "keys",
                                     "create", f"bench{time.monotonic_ns()}", "--scope", "read"], cwd=ROOT,
                                    capture_output=True, text=True, check=True).stdout)["key"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port),
                             "--workers", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "IDSVC_API_RATE_PER_MINUTE": "100000", **env})
    base = f"http://127.0.0.1:{port}"
    try:
        if not wait_ready(base, 180):
            raise SystemExit("the server did not become ready")
        yield base, {"Authorization": f"Bearer {key}"}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def throughput(base: str, h: dict[str, str], photos: list[Path], clients: int, codes: Counter[int]) -> float:
    """Searches per second: ``clients`` threads, each searching its share of ``photos`` back to back."""
    shares = [photos[i::clients] for i in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(mine: list[Path]) -> None:
        with httpx.Client(base_url=base, headers=h, timeout=600) as c:
            start.wait()
            for p in mine:
                codes[c.post("/v1/search", files={"file": (p.name, p.read_bytes(), "image/jpeg")}).status_code] += 1

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return len(photos) / (time.perf_counter() - t0)


def burst(base: str, h: dict[str, str], photo: Path, n: int, codes: Counter[int]) -> list[float]:
    """``n`` searches sent at once: the seconds each refused one took."""
    data = photo.read_bytes()
    start = threading.Barrier(n)

    def one(_: int) -> tuple[int, float]:
        with httpx.Client(base_url=base, headers=h, timeout=600) as c:
            start.wait()
            t0 = time.perf_counter()
            res = c.post("/v1/search", files={"file": (photo.name, data, "image/jpeg")})
            return res.status_code, time.perf_counter() - t0

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(one, range(n)))
    for code, _ in answers:
        codes[code] += 1
    return [t for code, t in answers if code == 503]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=96)
    args = ap.parse_args()
    people = [d for d in sorted(LFW.iterdir()) if len(list(d.glob("*.jpg"))) >= 2]
    photos = [sorted(d.glob("*.jpg"))[1] for d in people[:args.requests]]
    home = Path(tempfile.mkdtemp()) / "home"
    gallery = Path(tempfile.mkdtemp())
    for d in people[:args.requests:2]:
        (gallery / d.name).mkdir()
        (gallery / d.name / "0.jpg").write_bytes(sorted(d.glob("*.jpg"))[0].read_bytes())
    subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "enroll", "--each", str(gallery)],
                   cwd=ROOT, capture_output=True)  # exit 2 when a photo is refused (two faces): the rest are stored
    codes: Counter[int] = Counter()
    rates: dict[tuple[str, int], list[float]] = {}
    for label, batch in (("gathered (16)", "16"), ("one per pass (1)", "1")):
        with server(home, IDSVC_API_BATCH=batch) as (base, h):
            throughput(base, h, photos[:8], 8, codes)  # warm
            for _ in range(args.rounds):
                for clients in (1, 8):
                    rates.setdefault((label, clients), []).append(throughput(base, h, photos, clients, codes))
    refusals: list[float] = []
    with server(home, IDSVC_API_QUEUE="2") as (base, h):
        for _ in range(args.rounds):
            refusals += burst(base, h, photos[0], 24, codes)
    print(f"{machine()}; one worker; a gallery of {len(people[:args.requests:2])}; {args.requests} searches of "
          f"distinct LFW photos per measure; medians of {args.rounds} rounds")
    rows = []
    for label in ("gathered (16)", "one per pass (1)"):
        one, eight = (statistics.median(rates[(label, c)]) for c in (1, 8))
        rows.append([label, f"{one:.1f}", f"{eight:.1f}", f"{eight / one:.2f}"])
    print(table(["IDSVC_API_BATCH", "1 client req/s", "8 clients req/s", "8 / 1"], rows))
    refusals.sort()
    print(f"IDSVC_API_QUEUE=2, 24 searches at once x {args.rounds}: {len(refusals)} refused 503 overloaded, "
          f"p50 {statistics.median(refusals) * 1000:.0f} ms, max {refusals[-1] * 1000:.0f} ms"
          if refusals else "no refusals")
    print(f"statuses {dict(codes)}")


if __name__ == "__main__":
    main()
