"""``idsvc export`` / ``idsvc import``: a home's identities, templates (embedding, model version, image sha256,
quality, source), stored crops and calibrated thresholds in one portable zip file, for backups and moving a gallery.

The archive holds ``manifest.json`` (format, counts, model versions, and the sha256 of every other member),
``identities.json``, ``templates.jsonl`` (one template per line, its embedding as base64 float32), ``thresholds.json``
and ``crops/<id>.png``. An archive is untrusted input: import bounds every member (its size in the manifest and in the
zip, a cap per member and in all, a compression-ratio limit, each member streamed), checks every checksum and every
row (identity names, the embedding's dimension, finite values and unit norm, crop references, times) before it
touches the home, refuses templates of another model version unless asked to re-embed them from their crops, and
stores everything in one registry transaction (crops are written inside it, and removed if it fails), so an import
that is refused, fails or is killed leaves the home as it was.
"""

from __future__ import annotations

import base64
import binascii
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
from idsvc.jobs.stored_crops import written_in_transaction
from idsvc.results import Exported, Imported
from idsvc.storage.vector_checks import vector_problems

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
            members[crop] = home.crops.read_bytes(r["crop_path"])
        row = {k: _plain(v) for k, v in r.items() if k not in ("identity_id", "embedding", "crop_path", "dim")}
        row.update({k: json.loads(r[k]) if r[k] else None for k in JSON_FIELDS})
        lines.append(json.dumps(row | {"crop": crop, "embedding": base64.b64encode(r["embedding"]).decode()}))
    members["templates.jsonl"] = ("\n".join(lines) + "\n").encode() if lines else b""
    manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "identities": len(idents), "templates": len(temps), "thresholds": len(thrs),
                "crops": sum(1 for k in members if k.startswith("crops/")),
                "model_versions": sorted({r["model_version"] for r in temps}),
                "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
                "sizes": {k: len(v) for k, v in members.items()}}
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
    return Exported.model_validate({"path": str(out), **{k: v for k, v in manifest.items()
                                                          if k not in ("sha256", "sizes")}})


#: Bounds on what an archive may make this process read (an archive is untrusted input): no crop idsvc writes is
#: near 1 MiB (160x160 PNG), and 1 GiB of ``templates.jsonl`` is ~350,000 templates of 512 floats.
MAX_CROP_BYTES = 1 << 20
MAX_DATA_BYTES = 1 << 30
MAX_TOTAL_BYTES = 4 << 30
#: Members over 1 MiB that inflate more than this are refused before they are read: zeros and padding inflate
#: ~1000x; PNG crops not at all; templates.jsonl ~1.3x, and ~100x at worst when every row holds the same vector.
MAX_RATIO = 200
_CHUNK = 1 << 20


class Archive:
    """An archive opened for import: its manifest read and every listed member's size, ratio and checksum checked
    (streamed, never more than a bounded chunk at a time) before anything is returned. Data members are then read
    in full (bounded); crops are read one at a time when they are written. Raises ``file_not_found``,
    ``archive_invalid`` naming the first problem."""

    def __init__(self, src: Path) -> None:
        if not src.is_file():
            raise IdsvcError("file_not_found", f"{src}: no such file", path=str(src))
        self.src = src
        try:
            self.zip = zipfile.ZipFile(src)
        except (zipfile.BadZipFile, OSError) as exc:
            raise self.invalid(f"not an idsvc export archive ({exc.__class__.__name__})") from None
        try:
            self.manifest = self._manifest()
            self.sums: dict[str, str] = self.manifest["sha256"]
            self._check_members()
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_: object) -> None:
        self.zip.close()

    def invalid(self, problem: str, **details: Any) -> IdsvcError:
        return IdsvcError("archive_invalid", f"{self.src}: {problem}", path=str(self.src), **details)

    def _manifest(self) -> dict[str, Any]:
        try:
            info = self.zip.getinfo("manifest.json")
        except KeyError:
            raise self.invalid("not an idsvc export archive (no manifest.json)") from None
        if info.file_size > _CHUNK:
            raise self.invalid(f"manifest.json is {info.file_size} bytes (at most {_CHUNK})")
        try:
            manifest = json.loads(self._read(info, _CHUNK))
        except ValueError:
            raise self.invalid("manifest.json is not JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else None
            raise self.invalid(f"format {got!r}, expected {FORMAT}")
        sums, sizes = manifest.get("sha256"), manifest.get("sizes", {})
        if not isinstance(sums, dict) or not isinstance(sizes, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
            raise self.invalid("manifest.json lists its members' checksums wrongly")
        missing = [m for m in ("identities.json", "thresholds.json", "templates.jsonl") if m not in sums]
        if missing:
            raise self.invalid(f"the manifest does not list {missing[0]}", member=missing[0])
        return manifest

    def _check_members(self) -> None:
        """Every listed member exists, is within its bounds and matches its checksum; checked from the headers
        first (nothing inflated), then streamed."""
        sizes = self.manifest.get("sizes", {})
        infos = {}
        total = 0
        for name in self.sums:
            try:
                info = self.zip.getinfo(name)
            except KeyError:
                raise self.invalid(f"the manifest lists {name}, which the archive does not hold", member=name) from None
            cap = MAX_CROP_BYTES if name.startswith("crops/") else MAX_DATA_BYTES
            declared = sizes.get(name, info.file_size)
            if not isinstance(declared, int) or declared != info.file_size:
                raise self.invalid(f"{name}: the manifest says {declared} bytes, the archive {info.file_size}",
                                   member=name)
            if declared > cap:
                raise self.invalid(f"{name} is {declared} bytes (at most {cap})", member=name)
            if declared > _CHUNK and declared > MAX_RATIO * max(info.compress_size, 1):
                raise self.invalid(f"{name} inflates {declared / max(info.compress_size, 1):.0f} times (at most "
                                   f"{MAX_RATIO}): a decompression bomb", member=name)
            total += declared
            if total > MAX_TOTAL_BYTES:
                raise self.invalid(f"the members add up to more than {MAX_TOTAL_BYTES} bytes")
            infos[name] = info
        self.infos = infos
        for name, info in infos.items():
            self._read(info, info.file_size, want=self.sums[name], keep=False)

    def _read(self, info: zipfile.ZipInfo, cap: int, want: str | None = None, keep: bool = True) -> bytes:
        """The member's bytes, streamed: never more than ``cap`` (a header that lies about the size stops here),
        checked against ``want`` (sha256) when given. Raises ``archive_invalid``."""
        digest = hashlib.sha256()
        parts: list[bytes] = []
        n = 0
        try:
            with self.zip.open(info) as fh:
                while chunk := fh.read(min(_CHUNK, cap + 1 - n)):
                    n += len(chunk)
                    if n > cap:
                        raise self.invalid(f"{info.filename} holds more than its {cap} bytes", member=info.filename)
                    digest.update(chunk)
                    if keep:
                        parts.append(chunk)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise self.invalid(f"{info.filename} cannot be read ({exc.__class__.__name__})",
                               member=info.filename) from None
        if want is not None and digest.hexdigest() != want:
            raise self.invalid(f"{info.filename} fails its checksum", member=info.filename)
        return b"".join(parts)

    def member(self, name: str) -> bytes:
        """A listed member's bytes, checked again (the file may have changed since it was opened)."""
        info = self.infos[name]
        return self._read(info, info.file_size, want=self.sums[name])

    def rows(self, home: Home, *, reembed: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
        """(identities, templates, thresholds), every row checked before anything is stored. Raises
        ``archive_invalid`` (the first bad row), ``model_mismatch``."""
        try:
            idents = json.loads(self.member("identities.json"))
            thrs = json.loads(self.member("thresholds.json"))
            temps = [json.loads(line) for line in self.member("templates.jsonl").decode().splitlines()
                     if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.invalid(f"a data member is not JSON ({exc.__class__.__name__})") from None
        if not (isinstance(idents, list) and isinstance(thrs, list)):
            raise self.invalid("identities.json and thresholds.json must be lists")
        names = {self._identity(i, n) for n, i in enumerate(idents)}
        for n, thr in enumerate(thrs):
            self._threshold(thr, n)
        version, dim = home.model.version, home.model.dim
        others = sorted({str(r.get("model_version")) for r in temps if isinstance(r, dict)} - {version})
        if others and not reembed:
            raise IdsvcError("model_mismatch", f"{self.src} holds templates of {', '.join(others)}; this home uses "
                             f"{version}: pass --reembed to re-embed them from their crops", versions=others)
        seen: set[Any] = set()
        for n, r in enumerate(temps):
            self._template(r, n, names, seen, dim if r.get("model_version") == version else None)
        return idents, temps, thrs

    def _identity(self, ident: Any, n: int) -> str:
        try:
            if not isinstance(ident, dict) or not isinstance(ident.get("metadata", {}), dict):
                raise ValueError("not an object with a metadata object")
            ident["name"] = check_name(ident["name"])
            ident.setdefault("metadata", {})
            _time(ident.get("created_at"))
        except (KeyError, TypeError, ValueError, IdsvcError) as exc:
            raise self.invalid(f"identity {n + 1}: {getattr(exc, 'message', exc)}") from None
        return str(ident["name"])

    def _threshold(self, thr: Any, n: int) -> None:
        try:
            if not isinstance(thr, dict):
                raise ValueError("not an object")
            for k in ("model_version", "target_far", "threshold"):
                if k not in thr:
                    raise KeyError(k)
            if not all(isinstance(thr[k], (int, float)) and np.isfinite(thr[k]) for k in ("target_far", "threshold")):
                raise ValueError("target_far and threshold must be finite numbers")
            _time(thr.get("created_at"))
        except (KeyError, TypeError, ValueError) as exc:
            raise self.invalid(f"threshold {n + 1}: {exc.__class__.__name__} {exc}") from None

    def _template(self, r: Any, n: int, names: set[str], seen: set[Any], dim: int | None) -> None:
        """One template row, made ready to store (its embedding decoded, JSON fields as text)."""
        where = f"template {n + 1}"
        try:
            if not isinstance(r, dict):
                raise ValueError("not an object")
            missing = [k for k in REQUIRED_TEMPLATE_FIELDS if k not in r]
            if missing:
                raise ValueError(f"no {missing[0]!r}")
            where = f"template {r['id']}"
            if r["id"] in seen:
                raise ValueError("its id is given twice")
            seen.add(r["id"])
            if r["identity"] not in names:
                raise ValueError(f"its identity {r['identity']!r} is not in identities.json")
            crop = r.get("crop")
            if crop is not None and (not isinstance(crop, str) or not crop.startswith("crops/")
                                     or crop not in self.sums):
                raise ValueError(f"its crop {crop!r} is not a member the manifest lists")
            vec = np.frombuffer(base64.b64decode(r["embedding"], validate=True), dtype="<f4").astype(np.float32)
            _time(r.get("created_at"))
            for k in JSON_FIELDS:
                if r.get(k) is not None and not isinstance(r[k], (list, dict)):
                    raise ValueError(f"{k} is not a list")
        except (TypeError, ValueError, KeyError, binascii.Error) as exc:
            raise self.invalid(f"{where}: {exc}") from None
        if dim is not None:  # a vector of this home's model: it is searched as it is
            problems = vector_problems([0], [vec.tobytes()], dim)
            if problems:
                raise self.invalid(f"{where}: its embedding has {problems[0][1]}", template=r.get("id"))
        r["embedding"] = vec
        r.update({k: None if r.get(k) is None else json.dumps(r[k]) for k in JSON_FIELDS})


REQUIRED_TEMPLATE_FIELDS = ("id", "identity", "model_version", "image_sha256", "embedding", "source_path", "box",
                            "landmarks", "det_prob", "quality")


def _time(value: Any) -> None:
    if value is not None:
        dt.datetime.fromisoformat(str(value))


def import_archive(home: Home, src: Path, *, reembed: bool = False) -> Imported:
    """Add an archive's identities, templates, crops and thresholds to this home (under the write lock), then
    rebuild the index. Every member and row is checked before anything is stored, and the rows are stored in one
    transaction (crops inside it): on any refusal the home is as it was. Raises ``archive_invalid``,
    ``model_mismatch``, ``crop_missing``, ``identity_exists``, ``already_enrolled``, ``disk_full``."""
    t0 = time.perf_counter()
    with Archive(src) as archive:
        idents, temps, thrs = archive.rows(home, reembed=reembed)
        version = home.model.version
        if any(r["model_version"] != version for r in temps):
            _reembed(home, [r for r in temps if r["model_version"] != version], archive, src)
        def write(ids: dict[int, int]) -> dict[int, str]:  # {archive id: new id} → {new id: crop reference}
            return home.crops.save_bytes({ids[r["id"]]: archive.member(r["crop"]) for r in temps if r["crop"]})

        with home.lock.hold():
            store, undo = written_in_transaction(home.crops, home.registry, write)
            try:
                new_ids = home.registry.import_rows(idents, temps, thrs, store)
            except BaseException:
                undo()
                raise
            crash_point("import.committed")
            home.index.save(home.index.build())
    log.info("imported %d identities, %d templates from %s in %.2f s", len(idents), len(new_ids), src,
             time.perf_counter() - t0)
    return Imported(path=str(src), identities=len(idents), templates=len(new_ids), thresholds=len(thrs),
                    re_embedded=sum(1 for r in temps if r.get("re_embedded")), model_version=version,
                    archive_model_versions=archive.manifest.get("model_versions", []))


def _reembed(home: Home, rows: list[dict[str, Any]], archive: Archive, src: Path) -> None:
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
        bgr = cv2.imdecode(np.frombuffer(archive.member(r["crop"]), np.uint8), cv2.IMREAD_COLOR)
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
