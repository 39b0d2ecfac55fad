"""``idsvc migrate``: copy a home (identities, templates, thresholds, API keys, crops) to other backends — typically
from the embedded default (SQLite + FAISS) to PostgreSQL + Milvus — without touching the source.

Resumable by construction: ids are kept (template ids are vector ids), templates go over in id order, a batch per
transaction, so a killed copy leaves whole batches and the next run starts after the highest id already there; the
vectors are then made to match the target registry (``catch_up`` moves only the missing ones); the id sequences are
moved past the copied ids last. Running it again on a finished copy changes nothing.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.results import HomeCopied
from idsvc.settings import VECTORS_PATTERN
from idsvc.storage.registry import redact

log = logging.getLogger(__name__)


def copy_home(source: Home, target: Home, *, batch: int = 200,
              progress: Callable[..., None] | None = None) -> HomeCopied:
    """Copy ``source`` into ``target`` (see the module docstring). With a target home folder other than the
    source's, crops are copied there; otherwise the target's rows point at the source's crop files."""
    if source.settings.db_url == target.settings.db_url:
        raise IdsvcError("invalid_argument", "the target database is the source's; name another with --to-db")
    t0 = time.perf_counter()
    pending = source.registry.pending_ids(source.model.version)
    if pending:
        raise IdsvcError("upgrade_incomplete", "a model upgrade is half done in the source; finish it "
                         "(`idsvc reindex --model`) before migrating")
    copy_crops = source.settings.crops_dir.resolve() != target.settings.crops_dir.resolve()

    def place(row: dict[str, Any]) -> str | None:
        if not copy_crops or not source.crops.exists(row["crop_path"]):
            return row["crop_path"]
        dst = target.crops.path(row["id"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(str(source.crops.resolve(row["crop_path"])), dst)
        return target.crops.ref(row["id"])

    total = source.registry.counts()["templates"]
    if progress:
        progress(0, total=total, description="templates")
    with target.lock.hold():
        small = target.registry.copy_small_tables(source.registry)
        copied = 0
        for n in target.registry.copy_templates(source.registry, place, batch):
            copied += n
            if progress:
                progress(n)
        target.registry.reset_sequences()
        # Opening the target's store compares it with the target registry and adds only what is missing.
        target.index.save(target.index.open().index)
    manifest, problems = target.index.check_manifest()
    if problems:
        raise IdsvcError("index_corrupt", "the target's vectors disagree with its registry after the copy: "
                         + "; ".join(p["problem"] for p in problems))
    counts = target.registry.counts()
    log.info("migrated %d templates in %.1f s", copied, time.perf_counter() - t0)
    return HomeCopied(to_db=redact(target.settings.db_url), to_vectors=target.settings.vectors,
                      identities=counts["identities"], templates=counts["templates"], copied_now=copied,
                      copied_rows=small, vectors=(manifest or {}).get("count", 0),
                      crops="copied" if copy_crops else "shared with the source",
                      seconds=round(time.perf_counter() - t0, 2))


def copy_to(source: Home, to_db: str, to_vectors: str, *, to_home: Path | None = None, batch: int = 200,
            progress: Callable[..., None] | None = None) -> HomeCopied:
    """``idsvc migrate``: ``source`` copied to the registry ``to_db`` and the vector store ``to_vectors`` (crops into
    ``to_home`` when given). Raises ``invalid_argument`` for a vector store that is none of the three kinds."""
    import re

    if not re.fullmatch(VECTORS_PATTERN, to_vectors):
        raise IdsvcError("invalid_argument", f"--to-vectors {to_vectors!r}: use faiss, milvus:///path/file.db "
                         "or http://host:19530")
    settings = source.settings.model_copy(update={"db": to_db, "vectors": to_vectors,
                                                   "home": to_home or source.settings.home})
    target = Home(settings)
    try:
        return copy_home(source, target, batch=batch, progress=progress)
    finally:
        target.close()
