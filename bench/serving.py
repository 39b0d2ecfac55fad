"""Reads while writes run, on one `idsvc serve` worker (issue 28's first "done when"), in one run:

1. idle: search p95 of one LFW photo, one client, one request at a time;
2. while two 100-photo bulk enrolls run through the API (`POST /v1/enroll`, two clients at once);
3. while a 100-photo CLI enroll (another process) holds the home's write lock;
and `GET /v1/identities` throughout. Every answer's status is counted. Medians of `--rounds` rounds.

    python bench/serving.py [--rounds 3] [--photos 100]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table, wait_ready
from idsvc.settings import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
LFW = SHARED_DATA / "lfw" / "images"


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.95))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--photos", type=int, default=100)
    args = ap.parse_args()
    dirs = sorted(LFW.iterdir())
    probe = sorted((LFW / "Colin_Powell").glob("*.jpg"))[0]
    home = Path(tempfile.mkdtemp()) / "home"
    key = json.loads(subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "--json", "keys",
                                     "create", "bench", "--scope", "write"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout)["key"]
    subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "enroll", "colin",
                    str(sorted((LFW / "Colin_Powell").glob("*.jpg"))[2])], cwd=ROOT, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IDSVC_API_RATE_PER_MINUTE": "100000", "IDSVC_API_REQUEST_TIMEOUT_S": "600"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port),
                               "--workers", "1"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    h = {"Authorization": f"Bearer {key}"}
    try:
        if not wait_ready(base, 180):
            raise SystemExit("the server did not become ready")
        codes: Counter[int] = Counter()
        rows = []
        offset = 100
        for r in range(args.rounds):
            idle = searches(base, h, probe, codes, lambda n: n >= 40)
            # two bulk enrolls of distinct photos through the API
            batches = [[f for d in dirs[offset + i * args.photos: offset + (i + 1) * args.photos]
                        for f in sorted(d.glob("*.jpg"))[:1]] for i in range(2)]
            offset += 2 * args.photos
            done = threading.Event()
            running = [threading.Thread(target=bulk, args=(base, h, b, codes)) for b in batches]
            for t in running:
                t.start()
            waiter = threading.Thread(target=lambda ts=running, ev=done: ([t.join() for t in ts], ev.set()))
            waiter.start()
            time.sleep(0.5)
            listings: list[float] = []
            during_api = searches(base, h, probe, codes, lambda _, ev=done: ev.is_set(), listings)
            waiter.join()
            # a CLI enroll of 100 photos in another process, holding the write lock while it runs
            folder = Path(tempfile.mkdtemp())
            for d in dirs[offset: offset + args.photos]:
                for f in sorted(d.glob("*.jpg"))[:1]:
                    (folder / f.name).write_bytes(f.read_bytes())
            offset += args.photos
            cli = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "enroll", "--recursive",
                                    f"cli{r}", str(folder)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            time.sleep(3)  # its models loaded and its write lock taken
            during_cli = searches(base, h, probe, codes, lambda _, p=cli: p.poll() is not None, listings)
            rows.append((p95(idle), p95(during_api), len(during_api), p95(during_cli), len(during_cli),
                         max(listings) * 1000 if listings else float("nan")))
        med = [statistics.median(x[i] for x in rows) for i in range(6)]
        print(f"{machine()}; one worker; {args.photos}-photo enrolls; medians of {args.rounds} rounds")
        print(table(["", "search p95 ms", "searches", "x idle"], [
            ["idle", f"{med[0]:.0f}", "40", "1.0"],
            ["2 API bulk enrolls", f"{med[1]:.0f}", f"{med[2]:.0f}", f"{med[1] / med[0]:.1f}"],
            ["CLI enroll (write lock)", f"{med[3]:.0f}", f"{med[4]:.0f}", f"{med[3] / med[0]:.1f}"]]))
        print(f"GET /v1/identities max {med[5]:.0f} ms throughout; statuses {dict(codes)}")
    finally:
        server.terminate()
        server.wait(timeout=60)


def searches(base: str, h: dict[str, str], probe: Path, codes: Counter[int], stop, listings=None) -> list[float]:
    """One client searching back to back until ``stop(n)``; with ``listings``, a listing between searches."""
    out: list[float] = []
    data = probe.read_bytes()
    with httpx.Client(base_url=base, headers=h, timeout=600) as c:
        while not stop(len(out)):
            t0 = time.perf_counter()
            res = c.post("/v1/search", files={"file": (probe.name, data, "image/jpeg")})
            out.append(time.perf_counter() - t0)
            codes[res.status_code] += 1
            if listings is not None:
                t0 = time.perf_counter()
                codes[c.get("/v1/identities").status_code] += 1
                listings.append(time.perf_counter() - t0)
    return out


def bulk(base: str, h: dict[str, str], photos: list[Path], codes: Counter[int]) -> None:
    files = [("files", (f"{p.parent.name}/{p.name}", p.read_bytes(), "image/jpeg")) for p in photos]
    res = httpx.post(f"{base}/v1/enroll", headers=h, files=files, timeout=600)
    codes[res.status_code] += 1


if __name__ == "__main__":
    main()
