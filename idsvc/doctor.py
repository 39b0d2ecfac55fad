"""``doctor``: check the index, its manifest and the stored crops against the registry without repairing on open;
with ``fix``, repair from the registry (index rebuilt; lost crops re-made from their source photos where those still
match)."""

from __future__ import annotations

import logging
from typing import Any

from idsvc.crops import stored_landmarks
from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.upgrade import TEMPLATE_COLUMNS
from idsvc.vector_store import Problem

log = logging.getLogger(__name__)
UNFIXABLE_HERE = ("crops", "model_versions")  # checks that an index rebuild does not repair


def find_problems(home: Home) -> tuple[list[Problem], list[dict[str, Any]]]:
    """(problems, template rows whose crop is lost)."""
    problems: list[Problem] = []
    problems += home.index.check_manifest(verify_file=True)[1]  # as thorough as loading the index, without faiss
    rows = home.registry.template_rows(TEMPLATE_COLUMNS)
    lost = [r for r in rows if not home.crops.exists(r["crop_path"])]
    if lost:
        problems.append({"check": "crops", "problem": f"{len(lost)} templates have no stored crop",
                         "ids": [r["id"] for r in lost[:20]]})
    others = {r["model_version"] for r in rows} - {home.model.version}
    if others:
        problems.append({"check": "model_versions", "problem": "templates of other model versions: "
                         + ", ".join(sorted(others)) + " (run `idsvc reindex --model`)"})
    return problems, lost


def doctor(home: Home, *, fix: bool = False) -> dict[str, Any]:
    problems, lost = find_problems(home)
    fixed: list[str] = []
    if not (fix and problems):
        return {"problems": problems, "fixed": fixed, "remaining": problems, "ok": not problems}
    with home.lock.hold():
        for r in lost:
            try:
                made = home.crops.crop_for({**r, "crop_path": None}, home.model.pipeline)
            except IdsvcError:
                continue
            home.registry.set_crop_paths(home.crops.save({r["id"]: made.crop}),
                                         {r["id"]: stored_landmarks(made)})
            fixed.append(f"crop of template {r['id']} re-made from its source photo")
        if any(p["check"] not in UNFIXABLE_HERE for p in problems):
            home.index.save(home.index.build())
            fixed.append("index rebuilt from the registry")
    log.info("doctor fixed: %s", "; ".join(fixed) or "nothing")
    remaining, _ = find_problems(home)
    return {"problems": problems, "fixed": fixed, "remaining": remaining, "ok": not remaining}
