"""Load with a real tool: Locust (headless, `--csv`) runs `bench/locustfile.py`'s mixed workload against
`idsvc serve --workers 1` and `--workers 2` at increasing users, and prints per route requests/s, p50/p95/p99 and
errors — beside the pipeline's own batch throughput on the same photos in the same run (`Service.search` of the
probes in one call). A fresh home per server; the gallery is enrolled by the run itself.

    python bench/load.py [--users 1 4 8] [--seconds 30] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table, wait_ready
from idsvc.settings import SHARED_DATA, load_settings

ROOT = Path(__file__).resolve().parent.parent
LFW = SHARED_DATA / "lfw" / "images"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    photos = Path(tempfile.mkdtemp()) / "people"
    for d in [d for d in sorted(LFW.iterdir()) if len(list(d.glob("*.jpg"))) >= 4][:60]:
        (photos / d.name).mkdir(parents=True)
        for f in sorted(d.glob("*.jpg"))[:8]:
            shutil.copy(f, photos / d.name / f.name)
    version = subprocess.run([sys.executable, "-m", "locust", "--version"], capture_output=True, text=True).stdout
    print(f"{machine()}; Locust {version.split()[1]}; {args.seconds} s per step")
    print(f"pipeline alone, same probes: {pipeline_rate(photos):.1f} photos/s (one batch search)")
    for workers in args.workers:
        for users in args.users:
            rows = run(photos, workers, users, args.seconds)
            print(f"\n--workers {workers}, {users} users")
            print(table(["route", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows))


def pipeline_rate(photos: Path) -> float:
    from idsvc.service import Service

    s = load_settings(home=Path(tempfile.mkdtemp()) / "home", device="cpu")
    svc = Service(s)
    probes = [sorted(d.glob("*.jpg"))[0] for d in sorted(photos.iterdir())]
    svc.enroll("warm", [str(probes[0])])
    t0 = time.perf_counter()
    n = sum(1 for _ in svc.search([str(p) for p in probes]))
    rate = n / (time.perf_counter() - t0)
    svc.close()
    return rate


def run(photos: Path, workers: int, users: int, seconds: int) -> list[list[object]]:
    home = Path(tempfile.mkdtemp()) / "home"
    key = json.loads(subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "--json", "keys",
                                     "create", "bench", "--scope", "write"], cwd=ROOT, capture_output=True,
                                    text=True, check=True).stdout)["key"]
    first = [sorted(d.glob("*.jpg"))[1] for d in sorted(photos.iterdir())[:20]]
    subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "enroll", "seed", *map(str, first[:1])],
                   cwd=ROOT, capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "IDSVC_API_RATE_PER_MINUTE": "1000000", "IDSVC_BENCH_KEY": key,
           "IDSVC_BENCH_PHOTOS": str(photos)}
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "serve", "--port", str(port),
                               "--workers", str(workers)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    out = Path(tempfile.mkdtemp()) / "run"
    try:
        if not wait_ready(base, 300):
            raise SystemExit("the server did not become ready")
        locust = [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                  "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", base, "--csv", str(out),
                  "--only-summary"]
        subprocess.run(locust, env=env, capture_output=True, timeout=seconds + 120)
    finally:
        server.terminate()
        server.wait(timeout=60)
    rows = []
    with open(f"{out}_stats.csv") as fh:
        for r in csv.DictReader(fh):
            rows.append([r["Name"], f"{float(r['Requests/s']):.1f}", r["50%"], r["95%"], r["99%"],
                         r["Failure Count"]])
    return rows


if __name__ == "__main__":
    main()
