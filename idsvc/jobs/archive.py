"""``idsvc export`` / ``idsvc import``: a home's identities, templates (embedding, model version, image sha256,
quality, source), stored crops and calibrated thresholds in one portable zip file, for backups and moving a gallery.

The archive holds ``manifest.json`` (format, counts, model versions, and the sha256 of every other member),
``identities.json``, ``templates.jsonl`` (one template per line, its embedding as base64 float32), ``thresholds.json``
and ``crops/<id>.png``. Import checks every checksum before it touches the home, refuses templates of another model
version unless asked to re-embed them from their crops, and stores everything in one registry transaction (crops are
written inside it), so an import that fails or is killed leaves the home as it was.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.crash import crash_point
from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.jobs.identities import check_name
from idsvc.results import Exported, Imported

log = logging.getLogger(__name__)
FORMAT = "idsvc-archive/1"
JSON_FIELDS = ("box", "landmarks", "quality_details", "crop_landmarks")  # stored as JSON text in the registry


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def export_home(home: Home, out: Path) -> Exported:
    """Write the archive atomically (a temporary file renamed into place). Raises ``invalid_argument`` when ``out``
    cannot be written."""
    idents, temps, thrs = home.registry.export_rows()
    members: dict[str, bytes] = {
        "identities.json": json.dumps([{"name": i["name"], "metadata": json.loads(i["metadata"] or "{}"),
                                        "created_at": _plain(i["created_at"])} for i in idents]).encode(),
        "thresholds.json": json.dumps([{k: _plain(v) for k, v in r.items() if k not in ("id", "details")}
                                       | {"details": json.loads(r["details"] or "{}")} for r in thrs]).encode(),
    }
    lines = []
    for r in temps:
        crop = f"crops/{r['id']}.png" if home.crops.exists(r["crop_path"]) else None
        if crop:
            members[crop] = Path(str(r["crop_path"])).read_bytes()
        row = {k: _plain(v) for k, v in r.items() if k not in ("identity_id", "embedding", "crop_path", "dim")}
        row.update({k: json.loads(r[k]) if r[k] else None for k in JSON_FIELDS})
        lines.append(json.dumps(row | {"crop": crop, "embedding": base64.b64encode(r["embedding"]).decode()}))
    members["templates.jsonl"] = ("\n".join(lines) + "\n").encode() if lines else b""
    manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "identities": len(idents), "templates": len(temps), "thresholds": len(thrs),
                "crops": sum(1 for k in members if k.startswith("crops/")),
                "model_versions": sorted({r["model_version"] for r in temps}),
                "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}}
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
        os.replace(tmp, out)
    except OSError as exc:
        raise IdsvcError("invalid_argument", f"cannot write {out}: {exc.strerror}") from None
    return Exported.model_validate({"path": str(out), **{k: v for k, v in manifest.items() if k != "sha256"}})


def read_archive(src: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, members) after checking the format and every member's checksum. Raises ``file_not_found``,
    ``archive_invalid``."""
    if not src.is_file():
        raise IdsvcError("file_not_found", f"{src}: no such file", path=str(src))
    try:
        with zipfile.ZipFile(src) as z:
            manifest = json.loads(z.read("manifest.json"))
            members = {name: z.read(name) for name in manifest["sha256"]}
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise IdsvcError("archive_invalid", f"{src}: not an idsvc export archive ({exc.__class__.__name__})",
                         path=str(src)) from None
    if manifest.get("format") != FORMAT:
        raise IdsvcError("archive_invalid", f"{src}: format {manifest.get('format')!r}, expected {FORMAT}")
    bad = [n for n, data in members.items() if hashlib.sha256(data).hexdigest() != manifest["sha256"][n]]
    if bad:
        raise IdsvcError("archive_invalid", f"{src}: {len(bad)} members fail their checksum (first: {bad[0]})",
                         path=str(src))
    return manifest, members


def import_archive(home: Home, src: Path, *, reembed: bool = False) -> Imported:
    """Add an archive's identities, templates, crops and thresholds to this home (under the write lock), then
    rebuild the index. Raises ``archive_invalid``, ``model_mismatch``, ``crop_missing``, ``identity_exists``,
    ``already_enrolled``."""
    t0 = time.perf_counter()
    manifest, members = read_archive(src)
    try:
        idents = json.loads(members["identities.json"])
        thrs = json.loads(members["thresholds.json"])
        temps = [json.loads(line) for line in members["templates.jsonl"].decode().splitlines() if line.strip()]
        for ident in idents:
            ident["name"] = check_name(ident["name"])
    except (KeyError, TypeError, ValueError, IdsvcError) as exc:
        raise IdsvcError("archive_invalid", f"{src}: malformed members ({getattr(exc, 'message', exc)})",
                         path=str(src)) from None
    version = home.model.version
    others = sorted({r["model_version"] for r in temps} - {version})
    if others and not reembed:
        raise IdsvcError("model_mismatch", f"{src} holds templates of {', '.join(others)}; this home uses {version}: "
                         "pass --reembed to re-embed them from their crops", versions=others)
    for r in temps:
        r["embedding"] = np.frombuffer(base64.b64decode(r["embedding"]), dtype="<f4").astype(np.float32)
        r.update({k: None if r[k] is None else json.dumps(r[k]) for k in JSON_FIELDS})
    if others:
        _reembed(home, [r for r in temps if r["model_version"] != version], members, src)
    with home.lock.hold():
        new_ids = home.registry.import_rows(idents, temps, thrs, lambda ids: home.crops.save_bytes(
            {ids[r["id"]]: members[r["crop"]] for r in temps if r["crop"]}))
        crash_point("import.committed")
        home.index.save(home.index.build())
    log.info("imported %d identities, %d templates from %s in %.2f s", len(idents), len(new_ids), src,
             time.perf_counter() - t0)
    return Imported(path=str(src), identities=len(idents), templates=len(new_ids), thresholds=len(thrs),
                    re_embedded=sum(1 for r in temps if r.get("re_embedded")), model_version=version,
                    archive_model_versions=manifest.get("model_versions", []))


def _reembed(home: Home, rows: list[dict[str, Any]], members: dict[str, bytes], src: Path) -> None:
    """Give ``rows`` embeddings of the home's model, computed from their crops (and crop landmarks)."""
    import cv2

    from idsvc.landmarks import template

    missing = [r for r in rows if not r["crop"]]
    if missing:
        raise IdsvcError("crop_missing", f"{src}: {len(missing)} templates of another model have no crop to "
                         "re-embed from", template_id=missing[0]["id"])
    model = home.model
    size = model.encoder.input_size
    crops, marks = [], []
    for r in rows:
        bgr = cv2.imdecode(np.frombuffer(members[r["crop"]], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise IdsvcError("archive_invalid", f"{src}: {r['crop']} is not a PNG image")
        crop = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        lm = np.array(json.loads(r["crop_landmarks"]), np.float32) if r["crop_landmarks"] else template(crop.shape[0])
        if crop.shape[0] != size:
            lm = lm * np.float32(size / crop.shape[0])
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crops.append(crop)
        marks.append(lm)
    vecs = model.encoder.embed(np.stack(crops), np.stack(marks))
    for r, v in zip(rows, vecs):
        r.update(embedding=v, model_version=model.version, re_embedded=True)
