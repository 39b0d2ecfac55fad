"""``doctor``: check the index, its manifest and the stored crops against the registry without repairing on open;
with ``fix``, repair from the registry (index rebuilt; lost crops re-made from their source photos where those still
match) and sweep leftovers.

Three kinds of finding, so that a crash is not mistaken for damage:
- **problems**: the home disagrees with the registry in a way no later step will mend by itself (a lost vector, a
  lost crop, an index file that does not match its manifest). ``ok`` is false; ``--fix`` repairs.
- **notes**: an index *behind* the registry's last commit (a writer killed between the two steps, a replica's write):
  expected by design, caught up by the next search. ``ok`` stays true.
- **leftovers**: files no template refers to — the temp file of a killed index write, the crop of a transaction that
  never committed, the index folder of a model no longer active. Harmless, reported with their size; ``--fix``
  removes them under the write lock (so no live writer's temp file is taken), and only files older than the moment
  it took the lock.

A crop file is never a leftover while a template of *any* model version refers to it, by its recorded path or by its
name (``crops/<template id>.png``): a home that was moved, copied with ``cp -a`` or restored from a backup keeps
every crop (crop paths are recorded relative to the home since migration 0003). Vectors are checked as search needs
them — the model's dimension, finite, unit norm — and ``--fix`` re-embeds a bad one from its crop.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.jobs.stored_crops import crop_for, save_crops, stored_landmarks
from idsvc.jobs.upgrade import TEMPLATE_COLUMNS
from idsvc.results import DoctorReport, Finding, Leftover
from idsvc.storage.vectors import BEHIND, Problem

log = logging.getLogger(__name__)
UNFIXABLE_HERE = ("crops", "model_versions", "vectors")  # checks that an index rebuild does not repair


def find_problems(home: Home) -> tuple[list[Problem], list[dict[str, Any]], list[Problem], dict[int, str]]:
    """(problems, template rows whose crop is lost, notes, {template id: what is wrong with its vector})."""
    problems: list[Problem] = []
    found = home.index.check_manifest(verify_file=True)[1]  # as thorough as loading the index, without faiss
    notes = [p for p in found if p["check"] == BEHIND]
    problems += [p for p in found if p["check"] != BEHIND]
    rows = home.registry.template_rows(TEMPLATE_COLUMNS)
    lost = [r for r in rows if not home.crops.exists(r["crop_path"])]
    if lost:
        problems.append({"check": "crops", "problem": f"{len(lost)} templates have no stored crop",
                         "ids": [r["id"] for r in lost[:20]]})
    bad: dict[int, str] = {}
    for version, found_bad in home.registry.vector_problems(home.model.version, home.model.dim).items():
        bad.update(found_bad)
        tid, what = found_bad[0]
        problems.append({"check": "vectors", "problem": f"{len(found_bad)} {version} templates have vectors search "
                         f"cannot use (template {tid}: {what}); `idsvc doctor --fix` re-embeds them from their crops",
                         "ids": [i for i, _ in found_bad[:20]]})
    others = {r["model_version"] for r in rows} - {home.model.version}
    if others:
        problems.append({"check": "model_versions", "problem": "templates of other model versions: "
                         + ", ".join(sorted(others)) + " (run `idsvc reindex --model`)"})
    return problems, lost, notes, bad


def leftovers(home: Home, *, before: float | None = None) -> list[dict[str, Any]]:
    """Files under the home that nothing refers to: temp files of index writes whose process is gone, crops of
    templates that do not exist, index folders of models that are not active. ``before``: only crops last written
    before this time (``doctor --fix`` passes the moment it took the write lock)."""
    found: list[dict[str, Any]] = []
    index_root = home.settings.index_dir
    if home.settings.vectors == "faiss" and index_root.is_dir():  # Milvus keeps its own files
        for tmp in sorted(index_root.rglob("*.tmp")):
            if not _writer_alive(tmp):
                found.append({"kind": "temp_file", "path": str(tmp), "bytes": _size(tmp)})
        active = home.model.version  # the FAISS store keeps each version's index in a folder of that name
        for d in sorted(p for p in index_root.iterdir() if p.is_dir() and p.name != active):
            found.append({"kind": "inactive_index", "path": str(d), "bytes": _size(d)})
    crop_root = home.crops.root
    if crop_root.is_dir():
        rows = home.registry.template_rows(["id", "crop_path"])
        referenced = {os.path.realpath(str(home.crops.resolve(r["crop_path"]))) for r in rows if r["crop_path"]}
        referenced |= {os.path.realpath(home.crops.path(r["id"])) for r in rows}  # its own name: never a leftover
        for f in sorted(crop_root.iterdir()):
            if not f.is_file() or os.path.realpath(f) in referenced:
                continue
            if before is None or _mtime(f) < before:
                found.append({"kind": "orphan_crop", "path": str(f), "bytes": _size(f)})
    return found


def doctor(home: Home, *, fix: bool = False) -> DoctorReport:
    problems, lost, notes, bad = find_problems(home)
    extra = leftovers(home)
    fixed: list[str] = []
    if not (fix and (problems or extra)):
        return _report(problems, notes, extra, fixed, problems)
    with home.lock.hold():
        locked_at = time.time()
        for r in lost:
            own = home.crops.path(r["id"])
            if own.is_file():  # recorded elsewhere (a registry that no migration reached), kept under its own name
                home.registry.set_crop_paths({r["id"]: home.crops.ref(r["id"])})
                fixed.append(f"crop of template {r['id']} found in the home's crop folder")
                continue
            try:
                made = crop_for(home.crops, {**r, "crop_path": None}, home.model.pipeline)
            except IdsvcError:
                continue
            home.registry.set_crop_paths(save_crops(home.crops, {r["id"]: made.crop}),
                                         {r["id"]: stored_landmarks(made)})
            fixed.append(f"crop of template {r['id']} re-made from its source photo")
        re_embedded = _re_embed(home, bad, fixed)
        if re_embedded or any(p["check"] not in UNFIXABLE_HERE for p in problems):
            home.index.save(home.index.build())
            fixed.append("index rebuilt from the registry")
        swept = _sweep(leftovers(home, before=locked_at))  # again, under the lock: what a writer left before it
        fixed += [f"removed {x}" for x in swept]
    log.info("doctor fixed: %s", "; ".join(fixed) or "nothing")
    remaining, _, notes, _ = find_problems(home)
    return _report(problems, notes, leftovers(home), fixed, remaining)


def _report(problems: list[Problem], notes: list[Problem], extra: list[dict[str, Any]], fixed: list[str],
            remaining: list[Problem]) -> DoctorReport:
    return DoctorReport(problems=[Finding(**p) for p in problems], notes=[Finding(**n) for n in notes],
                        leftovers=[Leftover(**x) for x in extra], fixed=fixed,
                        remaining=[Finding(**p) for p in remaining], ok=not remaining)


def _re_embed(home: Home, bad: dict[int, str], fixed: list[str]) -> int:
    """Give each template with an unusable vector a new one from its crop (or its source photo), with the active
    model (a template of another version needs no vector of its own: ``reindex --model`` re-embeds it from its crop).
    Returns how many were re-embedded; those with neither crop nor photo stay reported."""
    if not bad:
        return 0
    version, encoder = home.model.version, home.model.encoder
    rows = [r for r in home.registry.template_rows(TEMPLATE_COLUMNS)
            if r["id"] in bad and r["model_version"] == version]
    made = {}
    for r in rows:
        try:
            made[r["id"]] = crop_for(home.crops, r, home.model.pipeline, encoder.input_size)
        except IdsvcError:
            continue
    if not made:
        return 0
    crops = list(made.values())  # one encoder pass
    vecs = encoder.embed(np.stack([a.crop for a in crops]), np.stack([a.landmarks for a in crops]))
    home.registry.set_embeddings(dict(zip(made, vecs)))
    fixed.append(f"{len(made)} templates re-embedded from their crops (their stored vectors were unusable)")
    return len(made)


def _sweep(items: list[dict[str, Any]]) -> list[str]:
    """Remove each leftover; returns what was removed, one line each, to say so."""
    removed = []
    for item in items:
        p = Path(item["path"])
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(f"{item['kind'].replace('_', ' ')} {p} ({item['bytes']} bytes)")
        except OSError as exc:
            log.warning("could not remove %s: %s", p, exc.strerror)
    return removed


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")


def _writer_alive(tmp: Path) -> bool:
    """Index temp files are named ``.NAME.PID.tmp``: alive while that process is."""
    parts = tmp.name.rsplit(".", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return int(parts[1]) != os.getpid()


def _size(p: Path) -> int:
    try:
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    except OSError:
        return 0
