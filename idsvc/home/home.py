"""One idsvc home and its collaborators, built lazily so that a command touches only what it needs.

``Home`` owns the registry connection, the active model (and its face pipeline), the vector store, the crop store and
the write lock, and hands each storage collaborator what it needs (never itself). The jobs (``idsvc.jobs``: enroll,
search, verify, identities, reindex, doctor, calibration, …) are functions over a ``Home``; ``Service`` is the one
door to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idsvc.home.active_model import ActiveModel
from idsvc.home.model_lock import ModelLock
from idsvc.settings import Settings
from idsvc.storage.backends import open_store
from idsvc.storage.crops import CropStore
from idsvc.storage.owners import Owners
from idsvc.storage.vectors import VectorStore
from idsvc.storage.write_lock import WriteLock, ensure_home

if TYPE_CHECKING:
    from idsvc.encoders.protocol import EmbeddingModel
    from idsvc.home.pipeline import Pipeline
    from idsvc.storage.registry import Registry


class Home:
    def __init__(self, settings: Settings, *, encoder: EmbeddingModel | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self.lock = WriteLock(settings, lambda: self.registry.engine)
        self.model = ActiveModel(settings, lambda: self.registry, encoder=encoder, pipeline=pipeline)
        self.crops = CropStore(settings.home)
        self.index: VectorStore = open_store(settings, lambda: self.registry, self.lock, self.model)
        self.owners = Owners(lambda: self.registry)
        #: Held while this process uses the models or changes the in-memory index (the networks and the FAISS object
        #: are not shared across threads), requests before a long job's next step (``ModelLock``). Lock order: the
        #: write lock first, then this — never wait for the write lock while holding it, so a writer waiting for
        #: another process never stalls this process's readers.
        self.busy = ModelLock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from idsvc.storage.registry import Registry

            if self.settings.db is None:  # the default SQLite file lives in the home
                ensure_home(self.settings.home)
            self._registry = Registry(self.settings.db_url)
        return self._registry

    def close(self) -> None:
        self.index.close()
        if self._registry is not None:
            self._registry.close()
            self._registry = None
