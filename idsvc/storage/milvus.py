"""The vector store on Milvus, through pymilvus: ``IDSVC_VECTORS=milvus:///path/file.db`` opens Milvus Lite
(embedded, one file), ``IDSVC_VECTORS=http://host:19530`` a Milvus server or cluster. Only this module imports
pymilvus.

It offers what ``FaissStore`` offers, so enroll, search, delete, reindex and doctor do not know which one
they hold: one collection per model version (``idsvc_<version>``), inner product on L2-normalised vectors, primary
keys = template ids. Writes go to Milvus at once; ``save`` only flushes. The registry stays the truth: ``open``
compares the collection with the registry when the registry's generation token changed and catches up, ``build``
refills the collection from the registry.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.settings import Settings
from idsvc.storage.vectors import BEHIND, ActiveVersion, OpenIndex, Problem, RegistryRef, catch_up, id_problems
from idsvc.storage.write_lock import WriteLock

if TYPE_CHECKING:
    from idsvc.storage.registry import Registry

log = logging.getLogger(__name__)
_BATCH = 5_000


def collection_name(version: str) -> str:
    return "idsvc_" + re.sub(r"[^0-9A-Za-z_]", "_", version)


def client_uri(vectors: str) -> str:
    """pymilvus's URI: a local file for ``milvus:///path`` (Milvus Lite), the server's URL otherwise."""
    return vectors.removeprefix("milvus://") if vectors.startswith("milvus://") else vectors


@dataclass
class MilvusIndex:
    """One model version's collection, with FaissIndex's methods (numpy in, ``(scores, ids)`` out)."""

    client: Any
    name: str
    dim: int
    kind: str = "milvus"

    @property
    def ntotal(self) -> int:
        rows = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> np.ndarray:
        out: list[int] = []
        it = self.client.query_iterator(self.name, batch_size=10_000, filter="id >= 0", output_fields=["id"])
        try:
            while batch := it.next():
                out.extend(int(r["id"]) for r in batch)
        finally:
            it.close()
        return np.sort(np.array(out, dtype=np.int64))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IdsvcError("model_mismatch", f"vectors of dimension {vectors.shape[-1]} do not fit a {self.dim}-d "
                             "collection")
        for start in range(0, len(ids), _BATCH):
            rows = [{"id": int(i), "vector": v.tolist()}
                    for i, v in zip(ids[start:start + _BATCH], vectors[start:start + _BATCH])]
            self.client.upsert(self.name, rows)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), _BATCH):
            self.client.delete(self.name, ids=ids[start:start + _BATCH])
        return len(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32)
        if q.ndim == 1:
            q = q[None, :]
        k = max(1, int(k))
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        hits = self.client.search(self.name, data=q.tolist(), limit=min(k, 16_384),
                                  search_params={"metric_type": "IP"})
        for row, found in enumerate(hits):
            for col, hit in enumerate(found[:k]):
                scores[row, col], ids[row, col] = hit["distance"], hit["id"]
        return scores, ids


class MilvusStore:
    """``FaissStore``'s interface over Milvus (see the module docstring)."""

    def __init__(self, settings: Settings, registry: RegistryRef, lock: WriteLock, model: ActiveVersion) -> None:
        self._registry, self.lock, self.model = registry, lock, model
        self.uri = settings.vectors
        self._client: Any = None
        self._open: OpenIndex | None = None
        self._loaded: set[str] = set()

    @property
    def registry(self) -> Registry:
        return self._registry()

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from pymilvus import MilvusClient
            except ImportError:
                raise IdsvcError("invalid_config", "IDSVC_VECTORS names Milvus but pymilvus is not installed: "
                                 "pip install 'idsvc[milvus]'") from None
            try:
                self._client = MilvusClient(client_uri(self.uri))
            except Exception as exc:  # noqa: BLE001 - pymilvus raises its own and grpc's; all mean "cannot reach"
                raise IdsvcError("database_unavailable", f"cannot open the vector store {self.uri}: "
                                 f"{str(exc).splitlines()[0][:200]}") from None
        return self._client

    def location(self) -> str:
        return self.uri

    def _index(self, version: str | None = None) -> MilvusIndex:
        """This model version's collection, made if missing and loaded if an earlier process made it."""
        found = self._existing(version)
        if found is not None:
            return found
        name = collection_name(version or self.model.version)
        self._create(name, self.model.dim)
        self._loaded.add(name)
        return MilvusIndex(self.client, name, self.model.dim)

    def _existing(self, version: str | None = None) -> MilvusIndex | None:
        version = version or self.model.version
        name = collection_name(version)
        if not self.client.has_collection(name):
            return None
        if name not in self._loaded:  # a collection from an earlier process starts released
            self.client.load_collection(name)
        self._loaded.add(name)
        return MilvusIndex(self.client, name, self.model.dim)

    def _create(self, name: str, dim: int) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self.client.prepare_index_params()
        kind = "FLAT" if self.uri.startswith("milvus://") else "HNSW"
        params.add_index(field_name="vector", index_type=kind, metric_type="IP")
        self.client.create_collection(name, schema=schema, index_params=params)

    def build(self, kind: str | None = None) -> MilvusIndex:
        """Refill this model version's collection from the registry (dropped and made anew)."""
        t0 = time.perf_counter()
        name = collection_name(self.model.version)
        if self.client.has_collection(name):
            self.client.drop_collection(name)
        self._loaded.discard(name)
        index = self._index()
        for ids, vecs in self.registry.iter_embeddings(self.model.version, self.model.dim):
            index.add(ids, vecs)
        log.info("built Milvus collection %s in %.2f s", name, time.perf_counter() - t0)
        return index

    def save(self, index: Any, *, verify: bool = True) -> None:
        """Milvus has the writes already; remember which registry generation the collection reflects (in memory, and
        in the registry, where ``check_manifest`` tells a collection behind a later commit from a damaged one)."""
        self._synced(self.registry.generation())
        self._open = OpenIndex(index, {"kind": "milvus"}, 0.0, False, self.registry.generation())

    def _synced(self, generation: str) -> None:
        self.registry.set_meta(f"milvus_synced:{collection_name(self.model.version)}", generation)

    def open(self, *, repair: bool = True) -> OpenIndex:
        """The collection, caught up with the registry whenever the registry's generation token changed."""
        generation = self.registry.generation()
        if self._open is not None and self._open.generation == generation:
            return self._open
        index = self._index()
        wanted, have = self.registry.template_ids(self.model.version), index.ids()
        problems = id_problems(wanted, have)
        if problems and not repair:
            raise IdsvcError("index_corrupt", "vector store disagrees with the registry: "
                             + "; ".join(p["problem"] for p in problems))
        if problems:
            with self.lock.hold():
                added, removed = catch_up(index, self.registry, self.model.version, wanted, have)
                self._synced(generation)
            log.info("Milvus collection caught up with the registry: %d added, %d removed", added, removed)
        self._open = OpenIndex(index, {"kind": "milvus"}, 0.0, bool(problems), generation)
        return self._open

    def _compare(self, index: MilvusIndex) -> list[Problem]:
        return id_problems(self.registry.template_ids(self.model.version), index.ids())

    def check_manifest(self, *, verify_file: bool = False) -> tuple[dict[str, Any] | None, list[Problem]]:
        """(a manifest-like summary, problems): the collection's ids against the registry's."""
        index = self._existing()
        if index is None:
            if not len(self.registry.template_ids(self.model.version)):
                return None, []
            return None, [{"check": "index_file", "problem": f"no Milvus collection for this model in {self.uri}"}]
        problems = self._compare(index)
        synced = self.registry.get_meta(f"milvus_synced:{collection_name(self.model.version)}")
        if problems and synced is not None and synced != self.registry.generation():
            # a writer killed between its commit and its Milvus write, or a replica's write: the next open catches up
            problems = [{"check": BEHIND, "problem": "the collection is behind the registry's last write; the next "
                         "search or `idsvc reindex` catches it up"}]
        return {"kind": "milvus", "count": index.ntotal, "model_version": self.model.version}, problems

    def agreed_ids(self) -> set[int] | None:
        return set(self.registry.template_ids(self.model.version).tolist())

    def delete_vectors(self, agreed: set[int] | None) -> None:
        """Delete from the collection the vectors whose templates the registry just deleted."""
        remaining = set(self.registry.template_ids(self.model.version).tolist())
        gone = sorted((agreed or set()) - remaining)
        index = self._existing()
        if gone and index is not None:
            index.remove(gone)
        self._synced(self.registry.generation())
        if self._open is not None:  # the collection now reflects the registry's latest write
            self._open.generation = self.registry.generation()

    def forget(self) -> None:
        self._open = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._loaded.clear()
