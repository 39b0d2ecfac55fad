"""Search latency of idsvc's index against a bare FAISS IndexFlatIP on the same vectors, in the same run.

idsvc's path is ``FaissIndex.search`` (IndexIDMap2 over IndexFlatIP, ids mapped, padding handled) and, at the sizes
where a registry is built, the service's path: ``home.index.open()`` (the registry's generation token, the cached
index) and ``idsvc.jobs.search.rank`` (index search, then the in-memory template → identity map). Exact search, so recall
against the bare index must be 1.0.

    python bench/search.py [--sizes 10000 100000 1000000] [--queries 200] [--k 10] [--service-max 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, peak_rss_mb, table, timed, unit_vectors  # noqa: E402
from idsvc.jobs.search import rank  # noqa: E402
from idsvc.storage.faiss_index import FaissIndex  # noqa: E402


def service_with(n: int, vectors: np.ndarray, home: Path):
    """A real registry (SQLite) holding n templates over n/5 identities, and a Service over it."""
    import json

    from sqlalchemy import insert

    from idsvc.service import Service
    from idsvc.settings import DEFAULT_MODEL, load_settings
    from idsvc.storage import schema as t
    from idsvc.storage.registry import now, to_blob

    # The 128-d FaceNet member's version, so the vectors fit; searching needs no encoder loaded.
    s = load_settings(home=home, device="cpu", model=DEFAULT_MODEL.with_name("idsvc-facenet.pt"))
    svc = Service(s)
    reg = svc.home.registry
    version = svc.version
    created = now()
    with reg.engine.begin() as conn:
        conn.execute(insert(t.identities), [{"id": i + 1, "name": f"person{i}", "metadata": "{}",
                                             "created_at": created} for i in range(n // 5)])
        for start in range(0, n, 50_000):
            conn.execute(insert(t.templates), [
                {"id": i + 1, "identity_id": i // 5 + 1, "embedding": to_blob(vectors[i]), "dim": 128,
                 "model_version": version, "image_sha256": f"{i:064x}", "source_path": "bench", "box": "[]",
                 "landmarks": "[]", "det_prob": 1.0, "quality": 1.0, "quality_details": json.dumps({}),
                 "created_at": created} for i in range(start, min(n, start + 50_000))])
    return svc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--service-max", type=int, default=100_000, help="largest N for the service-level row")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    d = 128
    rows = []
    for n in args.sizes:
        x = unit_vectors(n, d, seed=1)
        q = unit_vectors(args.queries, d, seed=2)
        ids = np.arange(1, n + 1, dtype=np.int64)

        bare = faiss.IndexFlatIP(d)
        bare.add(x)
        ours = FaissIndex.create("flat", d)
        ours.add(ids, x)

        it = iter(range(10**9))
        t_bare = timed(lambda: bare.search(q[next(it) % len(q)][None], args.k), args.queries)
        it = iter(range(10**9))
        t_ours = timed(lambda: ours.search(q[next(it) % len(q)][None], args.k), args.queries)
        _, bi = bare.search(q, args.k)
        _, oi = ours.search(q, args.k)
        recall = float(np.mean([len(set(a + 1) & set(b)) / args.k for a, b in zip(bi, oi)]))
        rows.append([n, "idsvc FaissIndex.search", np.percentile(t_ours, 50), np.percentile(t_ours, 99),
                     np.percentile(t_bare, 50), np.percentile(t_bare, 99),
                     np.percentile(t_ours, 50) / np.percentile(t_bare, 50), recall])
        if n <= args.service_max:
            with tempfile.TemporaryDirectory() as tmp:
                svc = service_with(n, x, Path(tmp))
                svc.home.index.open()
                it = iter(range(10**9))
                # What a service search costs besides detection and embedding: open (the registry's generation
                # token, the cached index) and rank (index search, in-memory template → identity map).
                t_svc = timed(lambda: rank(svc.home, svc.home.index.open(), q[next(it) % len(q)], 5, 0.5), args.queries)
                rows.append([n, "idsvc service path (open + rank, top-5)", np.percentile(t_svc, 50),
                             np.percentile(t_svc, 99), np.percentile(t_bare, 50), np.percentile(t_bare, 99),
                             np.percentile(t_svc, 50) / np.percentile(t_bare, 50), "-"])
                svc.close()
        del bare, ours
    print(f"# search latency, one query at a time, k={args.k}, d={d}, random unit vectors — {machine()}, "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; load {load_start:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(table(["N", "path", "ours p50 ms", "ours p99 ms", "bare p50 ms", "bare p99 ms", "ratio p50",
                 "recall@k vs bare"], rows))
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
