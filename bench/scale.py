"""Index kinds at scale: build time, search p50/p99, recall@1/@10 against exact search, and memory — for idsvc's
FaissIndex and a bare FAISS index of the same kind and settings, in the same run, as a ratio; with ``--milvus``,
Milvus Lite collections (through idsvc's MilvusIndex, FLAT and HNSW) beside them, the ratio again against bare FAISS
of the same kind.

The gallery is N vectors: real face embeddings (LFW photos through the shipped model) plus random unit vectors to
fill up to N. Queries are held-out real face embeddings (other photos of gallery people and strangers), since a
search query is always a face; exact ground truth comes from numpy brute force.

    python bench/scale.py [--sizes 100000 1000000] [--kinds flat ivf-flat ivf-pq hnsw] [--queries 200]
                          [--milvus flat hnsw] [--milvus-max 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import current_rss_mb, machine, peak_rss_mb, table, timed, unit_vectors  # noqa: E402
from idsvc.settings import SHARED_DATA, load_settings  # noqa: E402
from idsvc.storage.faiss_index import FaissIndex, IndexParams, exact_search  # noqa: E402


def real_embeddings(home: Path, limit: int) -> np.ndarray:
    """Embeddings of up to ``limit`` LFW photos with the shipped model (cached under ``home``)."""
    from idsvc.encoders.load import load_encoder
    from idsvc.home.pipeline import Pipeline
    from idsvc.jobs.evaluation import embed_photos
    from idsvc.storage.embedding_cache import EmbeddingCache

    s = load_settings(home=home, device="cpu")
    enc = load_encoder(s.model, device="cpu")
    photos = sorted((SHARED_DATA / "lfw" / "images").rglob("*.jpg"))[:limit]
    vecs, _ = embed_photos(Pipeline(s, enc), photos, EmbeddingCache(s.cache_dir, enc.version))
    return vecs.astype(np.float32)


def bare_index(kind: str, d: int, p: IndexParams, train: np.ndarray):
    """The same index built directly with faiss, no idsvc code involved."""
    n = len(train)
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        ix = faiss.IndexHNSWFlat(d, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = p.ef_construction
        ix.hnsw.efSearch = p.ef_search
        return ix
    nlist = max(1, min(p.nlist or int(4 * np.sqrt(n)), n // 39))
    q = faiss.IndexFlatIP(d)
    ix = (faiss.IndexIVFFlat(q, d, nlist, faiss.METRIC_INNER_PRODUCT) if kind == "ivf-flat"
          else faiss.IndexIVFPQ(q, d, nlist, p.pq_m, 8, faiss.METRIC_INNER_PRODUCT))
    ix.train(train)
    ix.nprobe = p.probes(nlist)
    q.this.disown()  # the IVF index owns its quantizer
    ix.own_fields = True
    return ix


def milvus_index(path: Path, kind: str, d: int, p: IndexParams, x: np.ndarray, ids: np.ndarray):
    """A Milvus Lite collection filled with ``x``, through idsvc's MilvusIndex (what a home with
    IDSVC_VECTORS=milvus:///… searches): (index, client, build seconds)."""
    from pymilvus import DataType, MilvusClient

    from idsvc.storage.milvus import MilvusIndex

    client = MilvusClient(str(path))
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=d)
    params = client.prepare_index_params()
    if kind == "hnsw":
        params.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                         params={"M": p.hnsw_m, "efConstruction": p.ef_construction})
    else:
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    t = time.perf_counter()
    client.create_collection("bench", schema=schema, index_params=params)
    index = MilvusIndex(client, "bench", d)
    index.add(ids, x)
    client.flush("bench")
    index.ntotal  # noqa: B018 - a query waits for the data to be searchable
    return index, client, time.perf_counter() - t


def compare(ours, bare, queries: np.ndarray, truth: np.ndarray) -> list[float]:
    """[p50 ms, p99 ms, bare p50 ms, p50 ratio, recall@1, recall@10, bare recall@10]: one query at a time, k = 10."""
    lat = [timed(lambda q=q, s=search: s(q[None], 10), 1)[0] for search in (ours, bare) for q in queries]
    lat_ours, lat_bare = np.array(lat[:len(queries)]), np.array(lat[len(queries):])
    _, got = ours(queries, 10)
    _, got_bare = bare(queries, 10)
    return [np.percentile(lat_ours, 50), np.percentile(lat_ours, 99), np.percentile(lat_bare, 50),
            np.percentile(lat_ours, 50) / np.percentile(lat_bare, 50), recall(got, truth, 1), recall(got, truth, 10),
            recall(got_bare, truth, 10)]


def recall(got: np.ndarray, truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivf-flat", "ivf-pq", "hnsw"])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--real", type=int, default=3000, help="LFW photos embedded for the real part of the gallery")
    ap.add_argument("--home", type=Path, default=Path("/tmp/idsvc-bench"), help="embedding cache location")
    ap.add_argument("--nprobe", type=int, default=IndexParams().nprobe)
    ap.add_argument("--ef-search", type=int, default=IndexParams().ef_search)
    ap.add_argument("--milvus", nargs="*", default=[], choices=["flat", "hnsw"],
                    help="also Milvus Lite collections of these kinds (needs idsvc[milvus])")
    ap.add_argument("--milvus-max", type=int, default=1_000_000, help="largest N for the Milvus rows")
    args = ap.parse_args()
    p = IndexParams(nprobe=args.nprobe, ef_search=args.ef_search)
    real = real_embeddings(args.home, args.real)
    d = real.shape[1]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(real))
    queries, real_gallery = real[perm[:args.queries]], real[perm[args.queries:]]
    rows = []
    for n in args.sizes:
        x = np.concatenate([real_gallery, unit_vectors(n - len(real_gallery), d, seed=n)])
        ids = np.arange(n, dtype=np.int64)
        truth_s, truth = exact_search(x, ids, queries, 10)
        for kind in args.kinds:
            t = time.perf_counter()
            ours = FaissIndex.create(kind, d, p, train=x)
            ours.add(ids, x)
            build_ours = time.perf_counter() - t
            t = time.perf_counter()
            bare = bare_index(kind, d, p, x)
            bare.add(x)
            build_bare = time.perf_counter() - t
            mem = len(faiss.serialize_index(ours.index)) / 2**20
            rows.append([n, kind, round(build_ours, 2), round(build_bare, 2),
                         *compare(ours.search, bare.search, queries, truth), round(mem, 1)])
            print(rows[-1], flush=True)
            del ours, bare
        for kind in args.milvus if n <= args.milvus_max else []:
            import tempfile

            with tempfile.TemporaryDirectory(dir=args.home) as tmp:
                rss0 = current_rss_mb()
                mil, client, build = milvus_index(Path(tmp) / "bench.db", kind, d, p, x, ids)
                rss = current_rss_mb() - rss0
                bare = bare_index(kind, d, p, x)
                t = time.perf_counter()
                bare.add(x)
                build_bare = time.perf_counter() - t
                rows.append([n, f"milvus-lite {kind}", round(build, 2), round(build_bare, 2),
                             *compare(mil.search, bare.search, queries, truth), f"~{rss:.0f} (RSS)"])
                print(rows[-1], flush=True)
                client.close()
                del mil, bare
    print(f"\n# index kinds at scale — {machine()}, faiss {faiss.__version__}; gallery = {len(real_gallery)} real "
          f"LFW embeddings + random unit vectors; {len(queries)} held-out real face queries; nprobe {p.nprobe or 'nlist/16'}, "
          f"efSearch {p.ef_search}, HNSW M {p.hnsw_m}, IVF nlist 4·√N, PQ m {p.pq_m}×8 bit")
    print(table(["N", "kind", "build s ours", "build s bare", "p50 ms ours", "p99 ms ours", "p50 ms bare",
                 "p50 ratio", "recall@1", "recall@10", "bare recall@10", "index MB"], rows))
    print(f"peak RSS {peak_rss_mb():.0f} MB; load average at the end {os.getloadavg()[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
