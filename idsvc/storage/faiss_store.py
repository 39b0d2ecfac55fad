"""The FAISS vector store: the active model's vector index on disk, checked against the registry, rebuilt from it.

The registry is the truth and the index is disposable. ``check`` is the one comparison of the two (status, doctor,
open and save all use it); ``open`` reloads an index another process saved, catches up with writes made through
another home on the same registry (PostgreSQL replicas: the registry's generation token says when), and rebuilds an
index that is missing or corrupt; ``save`` writes atomically and verifies.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.errors import IdsvcError, from_write_error
from idsvc.settings import Settings
from idsvc.storage.registry import UNINDEXED
from idsvc.storage.vectors import BEHIND, ActiveVersion, OpenIndex, Problem, RegistryRef, catch_up, id_problems
from idsvc.storage.write_lock import WriteLock

if TYPE_CHECKING:
    from idsvc.storage.faiss_index import FaissIndex, IndexParams
    from idsvc.storage.registry import Registry

log = logging.getLogger(__name__)


class FaissStore:
    """The FAISS backend: one folder per model version under ``HOME/index``."""

    def __init__(self, settings: Settings, registry: RegistryRef, lock: WriteLock, model: ActiveVersion) -> None:
        self.settings, self._registry, self.lock, self.model = settings, registry, lock, model
        self._open: OpenIndex | None = None

    @property
    def registry(self) -> Registry:
        return self._registry()

    def directory(self, version: str | None = None) -> Path:
        return self.settings.index_dir / (version or self.model.version)

    def location(self) -> str:
        """Where the vectors live (status and doctor say it)."""
        return str(self.directory())

    def close(self) -> None:
        self._open = None

    def params(self) -> IndexParams:
        from idsvc.storage.faiss_index import IndexParams

        s = self.settings
        return IndexParams(nlist=s.index_nlist, nprobe=s.index_nprobe, pq_m=s.index_pq_m, hnsw_m=s.index_hnsw_m,
                           ef_search=s.index_ef_search)

    def build(self, kind: str | None = None) -> FaissIndex:
        """A fresh index of every registry vector of the active model version: the registry is the truth."""
        from idsvc.storage.faiss_index import FaissIndex

        t0 = time.perf_counter()
        version, dim = self.model.version, self.model.dim
        kind = kind or self.settings.index_kind
        parts = list(self.registry.iter_embeddings(version, dim))
        ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        vecs = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, dim), np.float32)
        if kind != "flat" and len(ids) < 1000:
            kind = "flat"  # too few vectors to train an ANN index well; exact search is fast at this size anyway
        index = FaissIndex.create(kind, dim, self.params(), train=vecs, use_gpu=self.settings.index_gpu)
        index.add(ids, vecs)
        log.info("built %s index of %d vectors for %s in %.2f s", index.kind, index.ntotal, version,
                 time.perf_counter() - t0)
        return index

    def load(self) -> tuple[FaissIndex, dict[str, Any]]:
        """The saved index and manifest, as they are. Raises ``index_corrupt``."""
        from idsvc.storage.faiss_index import FaissIndex

        return FaissIndex.load(self.directory(), self.params(), use_gpu=self.settings.index_gpu)

    def check(self, index: FaissIndex | None, manifest: dict[str, Any] | None,
              registry_ids: np.ndarray | None = None) -> list[Problem]:
        """Every way ``index`` disagrees with the registry (empty = in agreement); ``registry_ids``, the active
        version's template ids, when the caller has them already."""
        from idsvc.storage.manifest import ids_checksum

        if index is None or manifest is None:
            return [{"check": "index_file", "problem": "index file missing or unreadable"}]
        model = self.model
        problems: list[Problem] = []
        if manifest.get("model_version") != model.version:
            problems.append({"check": "model_version",
                             "problem": f"index is for model {manifest.get('model_version')}, not {model.version}"})
        if index.dim != model.dim:
            problems.append({"check": "dimension",
                             "problem": f"index dimension {index.dim} != model dimension {model.dim}"})
        idx_ids = index.ids()
        if registry_ids is None:
            registry_ids = self.registry.template_ids(model.version)
        problems += id_problems(registry_ids, idx_ids)
        if manifest.get("ids_sha256") not in (None, ids_checksum(idx_ids)):
            problems.append({"check": "manifest", "problem": "manifest id checksum does not match the index"})
        return problems

    def check_manifest(self, *, verify_file: bool = False) -> tuple[dict[str, Any] | None, list[Problem]]:
        """(manifest, problems): the saved index's manifest against the registry — model version, dimension and the
        template ids — without loading the index (no faiss). With ``verify_file``, also whether the index file is
        the one the manifest describes (its sha256), which makes this as thorough as loading it."""
        from idsvc.checksums import file_sha256
        from idsvc.storage.manifest import ids_checksum, read_manifest

        model = self.model
        manifest = read_manifest(self.directory())
        if manifest is None and not len(self.registry.template_ids(model.version)):
            return None, []  # nothing enrolled for this model yet: nothing to index
        if manifest is None:
            if self.registry.get_meta(UNINDEXED) == self.registry.generation():
                return None, [{"check": BEHIND, "problem": "the model switch is committed and its index not built "
                               "yet; the next search or `idsvc reindex` builds it"}]
            return None, [{"check": "index_file", "problem": "no saved index for this model (any search or "
                           "`idsvc reindex` builds it from the registry)"}]
        problems: list[Problem] = []
        if manifest.get("model_version") != model.version:
            problems.append({"check": "model_version",
                             "problem": f"index is for model {manifest.get('model_version')}, not {model.version}"})
        if manifest.get("dim") != model.dim:
            problems.append({"check": "dimension",
                             "problem": f"index dimension {manifest.get('dim')} != model dimension {model.dim}"})
        reg_ids = self.registry.template_ids(model.version)
        if manifest.get("ids_sha256") != ids_checksum(reg_ids):
            saved_at = manifest.get("registry_generation")
            if saved_at is not None and saved_at != self.registry.generation():
                # The registry committed after this index was saved (a writer killed between the two steps, or a
                # replica's write): expected, and the next open catches the index up from the registry.
                problems.append({"check": BEHIND, "problem": f"the saved index is behind the registry's last write "
                                 f"({manifest.get('count')} vectors, {len(reg_ids)} templates); the next search or "
                                 "`idsvc reindex` catches it up"})
            else:
                problems.append({"check": "ids", "problem": f"the index's templates differ from the registry's "
                                 f"({manifest.get('count')} vectors, {len(reg_ids)} templates)"})
        index_file = self.directory() / "index.faiss"
        if not index_file.is_file():
            problems.append({"check": "index_file", "problem": "index file missing"})
        elif verify_file and file_sha256(index_file) != manifest.get("file_sha256"):
            problems.append({"check": "index_file", "problem": "index file does not match its manifest"})
        return manifest, problems

    def agreed_ids(self) -> set[int] | None:
        """The template ids the saved index holds, when its manifest says it agrees with the registry (else None)."""
        manifest, problems = self.check_manifest()
        if manifest is None or problems:
            return None
        return set(self.registry.template_ids(self.model.version).tolist())

    def delete_vectors(self, agreed: set[int] | None) -> None:
        """After the registry deleted templates: tombstone the vectors of those that were in the index (``agreed``,
        from ``agreed_ids`` before the delete) in the saved manifest, which FAISS loading and search honour (the next
        rebuild drops them) — so deleting needs neither faiss nor the model. When the index did not agree before,
        it is left as it was and the next open rebuilds it from the registry."""
        import json
        import os

        from idsvc.storage.manifest import MANIFEST_FILE, ids_checksum, read_manifest

        manifest = read_manifest(self.directory())
        if agreed is None or manifest is None:
            return
        remaining = self.registry.template_ids(self.model.version)
        gone = agreed - set(remaining.tolist())
        before = set(manifest.get("deleted", []))
        manifest.update(deleted=sorted(before | gone), count=len(remaining), ids_sha256=ids_checksum(remaining),
                        registry_generation=self.registry.generation())
        path = self.directory() / MANIFEST_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)

    def open(self, *, repair: bool = True) -> OpenIndex:
        """The index for the active model: the one in memory while neither the saved manifest nor the registry's
        generation token changed; else the saved one, caught up with the registry when only vectors differ
        (another replica wrote), rebuilt from the registry when it is missing, corrupt or of another model (and
        saved, if no other writer holds the lock). Raises ``index_corrupt`` instead of repairing when ``repair``
        is false."""
        manifest_path = self.directory() / "manifest.json"
        mtime = manifest_path.stat().st_mtime if manifest_path.exists() else -1.0
        generation = self.registry.generation()
        if self._open is not None and self._open.mtime == mtime and self._open.generation == generation:
            return self._open
        index: FaissIndex | None = None
        manifest: dict[str, Any] | None = None
        with contextlib.suppress(IdsvcError):  # missing or corrupt: check() reports it and we rebuild
            index, manifest = self.load()
        wanted = self.registry.template_ids(self.model.version)  # compared once, then caught up to
        problems = self.check(index, manifest, wanted)
        if not problems and index is not None and manifest is not None:
            self._open = OpenIndex(index, manifest, mtime, False, generation)
            return self._open
        if not repair:
            raise IdsvcError("index_corrupt", "index disagrees with the registry: "
                             + "; ".join(p["problem"] for p in problems))
        reasons = "; ".join(p["problem"] for p in problems)
        if index is not None and {p["check"] for p in problems} <= {"missing_vectors", "extra_vectors"}:
            added, removed = catch_up(index, self.registry, self.model.version, wanted)
            log.info("index caught up with the registry: %d vectors added, %d removed", added, removed)
            fresh = index
        else:
            if index is None:  # a new home, or a deleted file: expected, not alarming
                log.info("no usable index (%s): building it from the registry", reasons)
            else:
                log.warning("index disagrees with the registry (%s): rebuilding", reasons)
            fresh = self.build()
        try:
            with self.lock.hold(timeout=0):
                self.save(fresh, verify=False, generation=generation)
        except IdsvcError:  # another writer is busy; serve the in-memory index, it will save its own
            self._open = OpenIndex(fresh, {"model_version": self.model.version, "kind": fresh.kind,
                                           "count": fresh.ntotal}, mtime, True)
        if self._open is not None:
            self._open.repaired = True
            self._open.generation = generation
        return self._open  # type: ignore[return-value]

    def save(self, index: FaissIndex, *, verify: bool = True, generation: str | None = None) -> None:
        """Write atomically (temp file, fsync, rename); with ``verify``, rebuild from the registry if the saved index
        disagrees with it (it should not: the registry wins). ``generation``: the registry token the index was made
        from, when it was read before (``open``); by default the current one (a writer saves under the write lock
        right after its commit)."""
        d = self.directory()
        generation = generation or self.registry.generation()
        try:
            manifest = index.save(d, self.model.version, generation)
        except OSError as exc:
            raise from_write_error(exc, f"cannot write the index in {d}") from None
        self._open = OpenIndex(index, manifest, (d / "manifest.json").stat().st_mtime, False, generation)
        if verify and self.check(index, manifest):
            self.save(self.build(), verify=False)
            self._open.repaired = True

    def forget(self) -> None:
        """Drop the in-memory index (after a model switch) so the next ``open`` loads the new version's."""
        self._open = None
