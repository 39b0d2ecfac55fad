"""Model upgrade: re-embed every template's stored crop with a new checkpoint, then switch the home to it.

Progress is committed to the registry's pending table batch by batch, so a killed upgrade resumes where it stopped;
the switch moves every template to the new version in one transaction, and only when every template has its vector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from idsvc.crash import crash_point
from idsvc.home import Home
from idsvc.jobs.stored_crops import crop_for
from idsvc.results import Reindexed, Upgrade

log = logging.getLogger(__name__)
TEMPLATE_COLUMNS = ["id", "crop_path", "crop_landmarks", "source_path", "image_sha256", "model_version"]


def upgrade_model(home: Home, path: Path, progress: Callable[..., None] | None = None) -> Upgrade:
    """Re-embed with the checkpoint at ``path`` and make it the home's active model. Call under the write lock.
    Raises ``crop_missing`` for a template whose crop and source photo are both gone."""
    from idsvc.encoders.load import load_model

    t0 = time.perf_counter()
    settings, registry = home.settings, home.registry
    new = load_model(path, settings)
    rows = registry.template_rows(TEMPLATE_COLUMNS)
    old_versions = sorted({r["model_version"] for r in rows} - {new.version})
    done = registry.pending_ids(new.version)
    todo = [r for r in rows if r["id"] not in done and r["model_version"] != new.version]
    already = [r["id"] for r in rows if r["model_version"] == new.version and r["id"] not in done]
    if progress:
        progress(len(rows) - len(todo), total=len(rows))
    if already:  # templates already on the new version carry their vector over as it is
        registry.add_pending(new.version, {tid: vec for tid, (_, vec) in registry.embeddings_by_id(already).items()})
    step = max(1, settings.batch_size)
    for i in range(0, len(todo), step):
        part = todo[i:i + step]
        made = [crop_for(home.crops, r, home.model.pipeline, new.input_size) for r in part]
        vecs = new.embed(np.stack([a.crop for a in made]), np.stack([a.landmarks for a in made]))
        registry.add_pending(new.version, dict(zip((r["id"] for r in part), vecs)))  # committed
        crash_point("upgrade.embedded")
        if progress:
            progress(len(part))
    checkpoint = Path(str(new.path)).resolve()
    home_dir = settings.home.resolve()  # a checkpoint kept in the home is recorded relative to it (homes move)
    moved = registry.switch_model(new.version, str(checkpoint.relative_to(home_dir)
                                                   if checkpoint.is_relative_to(home_dir) else checkpoint))
    home.model.switch(new)
    home.index.forget()
    log.info("switched %d templates from %s to %s (%d re-embedded, %d resumed) in %.2f s", moved, old_versions,
             new.version, len(todo), len(done), time.perf_counter() - t0)
    return Upgrade.model_validate({"from": old_versions, "to": new.version, "templates": moved,
                                   "re_embedded": len(todo), "resumed_from": len(done),
                                   "already_on_new_version": len(already), "model_path": str(path)})


def reindex(home: Home, *, kind: str | None = None, model: Path | None = None,
            progress: Callable[..., None] | None = None) -> Reindexed:
    """Rebuild the index from the registry into a new file and swap it in; readers keep the old one until then.
    With ``model``, first upgrade every template to that checkpoint. A writer already running makes this ``busy``."""
    t0 = time.perf_counter()
    with home.lock.hold(timeout=0):
        upgrade = upgrade_model(home, Path(model), progress) if model is not None else None
        index = home.index.build(kind)
        home.index.save(index)
        return Reindexed(**({"upgrade": upgrade} if upgrade is not None else {}), model_version=home.model.version,
                         kind=index.kind, vectors=index.ntotal, seconds=round(time.perf_counter() - t0, 3))
