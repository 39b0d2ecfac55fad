"""Which vector store a home uses, by ``IDSVC_VECTORS``: ``faiss`` (files in the home, the embedded default), or
Milvus (``milvus:///path/file.db`` for Milvus Lite, ``http://host:19530`` for a server). The one place that knows
both backends, so it sits above them."""

from __future__ import annotations

from idsvc.settings import Settings
from idsvc.storage.vectors import ActiveVersion, RegistryRef, VectorStore
from idsvc.storage.write_lock import WriteLock


def open_store(settings: Settings, registry: RegistryRef, lock: WriteLock, model: ActiveVersion) -> VectorStore:
    """The backend ``settings.vectors`` names, given its collaborators (nothing is opened until first used)."""
    if settings.vectors == "faiss":
        from idsvc.storage.faiss_store import FaissStore

        return FaissStore(settings, registry, lock, model)
    from idsvc.storage.milvus import MilvusStore

    return MilvusStore(settings, registry, lock, model)
