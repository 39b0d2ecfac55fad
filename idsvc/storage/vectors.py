"""The vector-store interface. Two backends implement it: ``FaissStore`` (FAISS files in the home, the embedded
default) and ``MilvusStore`` (Milvus Lite or a Milvus server); ``idsvc.storage.backends.open_store`` picks by
``IDSVC_VECTORS``. Callers (enroll, search, delete, reindex, doctor, status) hold a ``VectorStore`` and never know
which. A backend is given its collaborators — settings, the registry, the write lock and the active model's version
and dimension — never the whole home.

Both keep the same promise: the registry is the truth. An open index records the registry's generation token it
reflects; when the token moves (a write through this process, another process or another host), ``open`` compares
ids with the registry and ``catch_up`` moves only the differing vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from idsvc.storage.registry import Registry

#: A problem found by a check: {"check": name, "problem": one line, "ids": up to 20 template ids (optional)}.
Problem = dict[str, Any]
#: The ``check`` of a saved index that only lags the registry's last commit: reported, never a problem to repair.
BEHIND = "behind"
#: The registry, asked for when first needed (opening it may create the database).
RegistryRef = Callable[[], "Registry"]


class ActiveVersion(Protocol):
    """What a vector store needs to know of the active model: whose vectors it holds, and how long they are. The
    version changes when a home switches model (``reindex --model``), so stores ask each time."""

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...


class VectorIndex(Protocol):
    """One model version's vectors: ids are template ids, scores inner products of L2-normalised vectors."""

    kind: str
    dim: int

    @property
    def ntotal(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray | list[int]) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class OpenIndex:
    index: Any  # a VectorIndex
    manifest: dict[str, Any]
    mtime: float
    repaired: bool
    generation: str = ""  # the registry's generation token this index reflects


class VectorStore(Protocol):
    def open(self, *, repair: bool = True) -> OpenIndex: ...

    def build(self, kind: str | None = None) -> Any: ...

    def save(self, index: Any, *, verify: bool = True) -> None: ...

    def check_manifest(self, *, verify_file: bool = False) -> tuple[dict[str, Any] | None, list[Problem]]: ...

    def agreed_ids(self) -> set[int] | None: ...

    def delete_vectors(self, agreed: set[int] | None) -> None: ...

    def forget(self) -> None: ...

    def close(self) -> None: ...

    def location(self) -> str: ...


def id_problems(registry_ids: np.ndarray, index_ids: np.ndarray) -> list[Problem]:
    """The ways an index's ids differ from the registry's: templates without a vector, vectors without a template."""
    problems: list[Problem] = []
    missing, extra = np.setdiff1d(registry_ids, index_ids), np.setdiff1d(index_ids, registry_ids)
    if len(missing):
        problems.append({"check": "missing_vectors", "problem": f"{len(missing)} templates have no vector",
                         "ids": missing[:20].tolist()})
    if len(extra):
        problems.append({"check": "extra_vectors", "problem": f"{len(extra)} vectors have no template",
                         "ids": extra[:20].tolist()})
    return problems


def catch_up(index: VectorIndex, registry: Any, version: str, wanted: np.ndarray | None = None,
             have: np.ndarray | None = None) -> tuple[int, int]:
    """Make ``index`` hold exactly the registry's vectors of ``version``: add the missing ones (fetched by id), remove
    the extra. Returns (added, removed). Cheaper than a rebuild: only the differing vectors move. ``wanted`` (the
    registry's ids) and ``have`` (the index's), when the caller just compared them, are not fetched again."""
    wanted = registry.template_ids(version) if wanted is None else wanted
    have = index.ids() if have is None else have
    extra = np.setdiff1d(have, wanted)
    missing = np.setdiff1d(wanted, have)
    if len(extra):
        index.remove(extra)
    for start in range(0, len(missing), 10_000):
        got = registry.embeddings_by_id(missing[start:start + 10_000].tolist())
        ids = [i for i, (v, _) in got.items() if v == version]
        if ids:
            index.add(np.array(ids, np.int64), np.stack([got[i][1] for i in ids]))
    return len(missing), len(extra)
