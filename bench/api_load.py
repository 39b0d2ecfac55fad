"""N concurrent clients against a real idsvc server on 127.0.0.1 for a bounded time, mixing search and enroll.

Starts its own server on a free port with a fresh home (or uses --url/--key), enrolls a small gallery, then runs
the clients: by default 80% searches (LFW photos) and 20% enrolls (distinct photos, one per request). Prints
requests/s, p50/p99 latency per kind, and errors. Every request loop stops by itself after --seconds (≤ 60).

    python bench/api_load.py [--clients 8] [--seconds 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table  # noqa: E402
from idsvc.settings import SHARED_DATA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--enroll-share", type=float, default=0.2)
    args = ap.parse_args()
    args.seconds = min(args.seconds, 60.0)

    lfw = SHARED_DATA / "lfw" / "images"
    people = [d for d in sorted(lfw.iterdir()) if len(list(d.glob("*.jpg"))) >= 4][:40]
    gallery = {d.name: sorted(d.glob("*.jpg"))[:2] for d in people}
    probes = [sorted(d.glob("*.jpg"))[2] for d in people]
    enroll_pool = [f for d in sorted(lfw.iterdir())[400:1400] for f in sorted(d.glob("*.jpg"))[:1]]

    home = Path(tempfile.mkdtemp()) / "home"
    key = json.loads(subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "--json", "keys",
                                     "create", "bench", "--scope", "write"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout)["key"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "IDSVC_API_RATE_PER_MINUTE": "100000"}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port),
                               "--workers", str(args.workers)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
            for name, files in gallery.items():
                c.post(f"/v1/identities/{name}/enroll",
                       files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in files]).raise_for_status()
            for _ in range(args.workers * 2):  # warm every worker
                c.post("/v1/search", files=[("file", ("p.jpg", probes[0].read_bytes(), "image/jpeg"))])

        lat: dict[str, list[float]] = {"search": [], "enroll": []}
        errors: list[str] = []
        lock = threading.Lock()
        pool = iter(enroll_pool)
        stop = time.time() + args.seconds

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
                while time.time() < stop:
                    kind = "enroll" if rng.random() < args.enroll_share else "search"
                    if kind == "enroll":
                        with lock:
                            f = next(pool, None)
                        if f is None:
                            kind, f = "search", rng.choice(probes)
                    else:
                        f = rng.choice(probes)
                    t = time.perf_counter()
                    try:
                        if kind == "search":
                            r = c.post("/v1/search", files=[("file", (f.name, f.read_bytes(), "image/jpeg"))])
                        else:
                            r = c.post(f"/v1/identities/{f.parent.name}/enroll",
                                       files=[("files", (f.name, f.read_bytes(), "image/jpeg"))])
                        ok = r.status_code == 200 or (kind == "search" and r.status_code == 422)
                        if not ok:
                            with lock:
                                errors.append(f"{kind} {r.status_code} {r.text[:120]}")
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(f"{kind} {exc!r}")
                        continue
                    with lock:
                        lat[kind].append((time.perf_counter() - t) * 1000)

        t0 = time.time()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        with httpx.Client(base_url=base, headers=headers, timeout=120) as c:
            st = c.get("/v1/status").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = []
    for kind, xs in lat.items():
        if xs:
            rows.append([kind, len(xs), len(xs) / elapsed, np.percentile(xs, 50), np.percentile(xs, 99)])
    total = sum(len(x) for x in lat.values())
    rows.append(["all", total, total / elapsed, np.percentile(sum(lat.values(), []), 50),
                 np.percentile(sum(lat.values(), []), 99)])
    print(f"# API load: {args.clients} clients, {args.seconds:.0f} s, {args.workers} server workers — {machine()}")
    print(table(["requests", "count", "req/s", "p50 ms", "p99 ms"], rows))
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    print(f"after the run: {st['templates']} templates, index in agreement: {st['index']['in_agreement']}")


if __name__ == "__main__":
    main()
