"""Which encoder checkpoint a home uses, loaded once.

The answer is, in order: the checkpoint named by ``--model`` / ``IDSVC_MODEL``; else the one this home switched to with
``reindex --model`` (recorded in the registry); else the shipped default. Every operation that embeds a face or reads
a threshold asks this object, so enroll, search, calibrate, eval and ``model info`` always agree on the model version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idsvc.encoders.checkpoint import sidecar_card
from idsvc.settings import Settings
from idsvc.storage.registry import ACTIVE_MODEL_KEY

if TYPE_CHECKING:
    from idsvc.encoders.protocol import EmbeddingModel
    from idsvc.home.pipeline import Pipeline
    from idsvc.storage.registry import Registry

log = logging.getLogger(__name__)


class ActiveModel:
    def __init__(self, settings: Settings, registry: Callable[[], Registry], *, encoder: EmbeddingModel | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self._registry = registry
        self._encoder = encoder
        self._pipeline = pipeline
        self._sidecar: tuple[tuple[str, int, int], dict[str, Any] | None] | None = None

    @property
    def path(self) -> Path:
        if "model" in self.settings.model_fields_set:
            return self.settings.model
        if self._encoder is not None and self._encoder.path is not None:
            return self._encoder.path
        active = self._registry().get_meta(ACTIVE_MODEL_KEY)
        recorded = self.settings.home / active if active else None  # relative: kept in the home (which may move)
        return recorded if recorded is not None and recorded.is_file() else self.settings.model

    @property
    def encoder(self) -> EmbeddingModel:
        if self._encoder is None:
            from idsvc.encoders.load import load_model

            self._encoder = load_model(self.path, self.settings)
            log.info("loaded model %s (%s) on %s", self._encoder.version, self._encoder.path, self._encoder.device)
        return self._encoder

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            from idsvc.home.pipeline import Pipeline

            self._pipeline = Pipeline(self.settings, self.encoder)
        return self._pipeline

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    @property
    def card(self) -> dict[str, Any]:
        """The model card — from the loaded encoder, else from the ``.card.json`` written beside the checkpoint
        when its recorded file checksum still matches (so ``status`` needs no torch), else by loading it."""
        if self._encoder is None:
            card = self._sidecar_card(self.path)
            if card is not None:
                return card
        return {**self.encoder.card, "version": self.encoder.version}

    def _sidecar_card(self, path: Path) -> dict[str, Any] | None:
        """``sidecar_card``, hashed once per file state (path, size, mtime), not once per call: a search asks for
        the version, and hashing a 46 MB checkpoint costs ~40 ms."""
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if self._sidecar is None or self._sidecar[0] != key:
            self._sidecar = (key, sidecar_card(path))
        return self._sidecar[1]

    @property
    def version(self) -> str:
        return self._encoder.version if self._encoder is not None else str(self.card["version"])

    @property
    def dim(self) -> int:
        return self._encoder.dim if self._encoder is not None else int(self.card["embedding_size"])

    def switch(self, encoder: EmbeddingModel) -> None:
        """Use ``encoder`` from now on in this process (``Registry.switch_model`` recorded its path with the move of
        the templates to its version)."""
        self._encoder = encoder
        self._pipeline = None
        self._sidecar = None
