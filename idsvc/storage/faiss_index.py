"""The vector index: FAISS behind a small interface (numpy in, ``(scores, ids)`` out). Only this module imports faiss.

Vector ids are template ids. Scores are inner products of L2-normalised vectors, i.e. cosine similarity. The index
is disposable: the registry can always rebuild it. On disk an index is ``index.faiss`` plus ``manifest.json``
(model version, kind, count, checksum of ids, checksum of the file), each written to a temp file, fsynced and renamed,
so a reader sees the old pair or the new one — and a torn pair is caught by the checksum.

Kinds: ``flat`` (exact, default), ``ivf-flat``, ``ivf-pq`` and ``hnsw``. HNSW cannot delete, so removed ids are
filtered at search time and dropped at the next rebuild. A planned Milvus backend would implement the same methods.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from idsvc.crash import crash_point
from idsvc.errors import IdsvcError
from idsvc.storage.manifest import MANIFEST_FILE, ids_checksum

KINDS = ("flat", "ivf-flat", "ivf-pq", "hnsw")
INDEX_FILE = "index.faiss"


@dataclass
class IndexParams:
    nlist: int = 0          # IVF lists; 0 = about 4·√N, at most N/39 (FAISS wants ~39 training points per list)
    nprobe: int = 0         # IVF lists visited per query; 0 = nlist/16 (at least 16): ~6% of the data, recall@10 ≥ 0.95
    pq_m: int = 16          # IVF-PQ sub-quantisers (must divide the dimension)
    hnsw_m: int = 32
    ef_search: int = 128
    ef_construction: int = 80

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def probes(self, nlist: int) -> int:
        return min(nlist, self.nprobe or max(16, nlist // 16))


def gpu_count() -> int:
    try:
        return faiss.get_num_gpus()
    except AttributeError:  # faiss-cpu
        return 0


@dataclass
class FaissIndex:
    index: Any
    kind: str
    dim: int
    params: IndexParams
    deleted: set[int] = field(default_factory=set)
    use_gpu: bool = False
    _gpu: Any = field(default=None, repr=False)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, kind: str, dim: int, params: IndexParams | None = None,
               train: np.ndarray | None = None, use_gpu: bool = False) -> FaissIndex:
        """A new empty index. IVF kinds are trained on ``train`` ((N, D) float32; the registry's vectors)."""
        params = params or IndexParams()
        index: Any  # faiss's Python classes are SWIG proxies its stubs describe only in part
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = params.ef_construction
            index = faiss.IndexIDMap2(inner)
        elif kind in ("ivf-flat", "ivf-pq"):
            n = 0 if train is None else len(train)
            if n == 0:
                raise IdsvcError("not_enough_data", f"a {kind} index needs vectors to train on; use flat")
            nlist = params.nlist or int(4 * math.sqrt(n))
            nlist = max(1, min(nlist, n // 39 or 1))
            quantizer: Any = faiss.IndexFlatIP(dim)
            if kind == "ivf-flat":
                index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            else:
                m = params.pq_m if dim % params.pq_m == 0 else math.gcd(dim, params.pq_m)
                nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(2, n // 39)))))
                index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
            index.train(np.ascontiguousarray(train, dtype=np.float32))
            index.nprobe = params.probes(nlist)
            quantizer.this.disown()  # the IVF index owns its quantizer from now on
            index.own_fields = True
        else:
            raise IdsvcError("invalid_argument", f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")
        return cls(index=index, kind=kind, dim=dim, params=params, use_gpu=use_gpu)

    # -- contents -----------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) - len(self.deleted)

    def ids(self) -> np.ndarray:
        """All live ids, sorted (int64)."""
        if self.kind in ("flat", "hnsw"):
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        else:
            inv = self.index.invlists
            parts = [faiss.rev_swig_ptr(inv.get_ids(i), inv.list_size(i)).copy()
                     for i in range(inv.nlist) if inv.list_size(i)]
            ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        if self.deleted:
            ids = ids[~np.isin(ids, np.fromiter(self.deleted, np.int64))]
        return np.sort(ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids (n,) int64, vectors (n, D) float32 L2-normalised."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IdsvcError("model_mismatch", f"vectors of dimension {vectors.shape[-1]} do not fit a {self.dim}-d "
                             "index")
        if len(ids):
            self.deleted.difference_update(ids.tolist())
            self.index.add_with_ids(vectors, ids)
            self._gpu = None

    def remove(self, ids: np.ndarray | list[int]) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        self._gpu = None
        if self.kind == "hnsw":
            present = set(self.ids().tolist())
            hit = [i for i in ids.tolist() if i in present]
            self.deleted.update(hit)
            return len(hit)
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (n, D) float32 → (scores (n, k) float32 descending, ids (n, k) int64; -1 where fewer exist)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        n = len(q)
        k = max(1, int(k))
        if self.ntotal == 0:
            return np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        fetch = min(k + len(self.deleted), int(self.index.ntotal))
        index = self._search_index()
        if self.kind == "hnsw":
            inner: Any = faiss.downcast_index(self.index.index)
            inner.hnsw.efSearch = max(self.params.ef_search, fetch)
        scores, ids = index.search(q, fetch)
        if self.deleted:
            dead = np.isin(ids, np.fromiter(self.deleted, np.int64))
            scores = np.where(dead, -np.inf, scores)
            ids = np.where(dead, -1, ids)
            order = np.argsort(-scores, axis=1, kind="stable")
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        out_s = np.full((n, k), -np.inf, np.float32)
        out_i = np.full((n, k), -1, np.int64)
        m = min(k, scores.shape[1])
        out_s[:, :m], out_i[:, :m] = scores[:, :m], ids[:, :m]
        out_s[out_i < 0] = -np.inf
        return out_s, out_i

    def _search_index(self) -> Any:
        if self.kind in ("ivf-flat", "ivf-pq"):
            self.index.nprobe = self.params.probes(self.index.nlist)
        if not self.use_gpu or self.kind == "hnsw" or gpu_count() == 0:
            return self.index
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)
            if self.kind in ("ivf-flat", "ivf-pq"):
                faiss.GpuParameterSpace().set_index_parameter(self._gpu, "nprobe", self.index.nprobe)
        return self._gpu

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: Path, model_version: str, registry_generation: str | None = None) -> dict[str, Any]:
        """Atomically write index + manifest (always a CPU index); ``registry_generation``: the registry's token the
        index reflects. Returns the manifest."""
        directory.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self.index).tobytes()
        _atomic_write(directory / INDEX_FILE, data)
        manifest = {
            "model_version": model_version, "kind": self.kind, "dim": self.dim, "count": self.ntotal,
            "ids_sha256": ids_checksum(self.ids()), "file_sha256": hashlib.sha256(data).hexdigest(),
            "deleted": sorted(self.deleted), "params": self.params.as_dict(),
            "registry_generation": registry_generation,
            "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        _atomic_write(directory / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
        return manifest

    @classmethod
    def load(cls, directory: Path, params: IndexParams | None = None, use_gpu: bool = False,
             ) -> tuple[FaissIndex, dict[str, Any]]:
        """Raises ``index_corrupt`` when the files are missing, unreadable or disagree with the manifest."""
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            data = (directory / INDEX_FILE).read_bytes()
        except (OSError, ValueError) as exc:
            raise IdsvcError("index_corrupt", f"index at {directory} is missing or unreadable ({exc})") from None
        if hashlib.sha256(data).hexdigest() != manifest.get("file_sha256"):
            raise IdsvcError("index_corrupt", f"index file at {directory} does not match its manifest")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        p = IndexParams(**{**manifest.get("params", {}), **((params or IndexParams()).as_dict() if params else {})})
        obj = cls(index=index, kind=manifest["kind"], dim=int(manifest["dim"]), params=p,
                  deleted=set(manifest.get("deleted", [])), use_gpu=use_gpu)
        return obj, manifest


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file (``.NAME.PID.tmp``: ``doctor`` knows a dead writer's leftovers by it), fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:  # a full disk: leave no half-written temp file behind
        tmp.unlink(missing_ok=True)
        raise
    crash_point("index.temp_written")
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def exact_search(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force numpy search: the oracle every index kind is tested and benchmarked against."""
    scores = np.asarray(queries, np.float32) @ np.asarray(vectors, np.float32).T
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(scores, part, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    return np.take_along_axis(top, order, 1), np.asarray(ids)[np.take_along_axis(part, order, 1)]
