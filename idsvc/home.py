"""One idsvc home and its collaborators, built lazily so that a command touches only what it needs.

``Home`` owns the registry connection, the active model, the index store, the crop store and the write lock. The
operations (``enroll``, ``search``, ``verify``, ``identities``, ``reindex``, ``upgrade``, ``doctor``, ``calibration``)
are functions over a ``Home``; ``Service`` is the one door to them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from idsvc.active_model import ActiveModel
from idsvc.crops import CropStore
from idsvc.owners import Owners
from idsvc.settings import Settings
from idsvc.vector_store import VectorStore, make_store
from idsvc.write_lock import WriteLock, ensure_home

if TYPE_CHECKING:
    from idsvc.encoder import EmbeddingModel
    from idsvc.pipeline import Pipeline
    from idsvc.registry import Registry


class Home:
    def __init__(self, settings: Settings, *, encoder: EmbeddingModel | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self._registry: Registry | None = None
        self.lock = WriteLock(settings, lambda: self.registry.engine)
        self.model = ActiveModel(settings, lambda: self.registry, encoder=encoder, pipeline=pipeline)
        self.crops = CropStore(settings.crops_dir)
        self.index: VectorStore = make_store(self)
        self.owners = Owners(lambda: self.registry)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            from idsvc.registry import Registry

            if self.settings.db is None:  # the default SQLite file lives in the home
                ensure_home(self.settings.home)
            self._registry = Registry(self.settings.db_url)
        return self._registry

    def close(self) -> None:
        self.index.close()
        if self._registry is not None:
            self._registry.close()
            self._registry = None
