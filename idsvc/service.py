"""The workflow layer: enroll, search, verify, identities, status, reindex. The CLI and the HTTP API each call one
method here and render its plain-dict result; the dict keys are the ``--json`` and API field names.

Writes follow one order: take the cross-process lock, commit to the registry, update the index, save it atomically,
check the two agree. A crash at any point leaves a registry that is right and an index that the next open notices is
stale (by count and id checksum) and rebuilds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from filelock import FileLock, Timeout

from idsvc.align import resize_crop, save_crop
from idsvc.encoder import Encoder, load_encoder
from idsvc.errors import IdsvcError
from idsvc.imageio import LoadedImage, expand_paths
from idsvc.index import FaissIndex, IndexParams, ids_checksum
from idsvc.pipeline import FaceCrop, Pipeline
from idsvc.registry import NewTemplate, Registry, redact
from idsvc.settings import Settings

Progress = Callable[[int], None]
CROP_SIZE = 160  # stored crops are kept at the template's native size; other input sizes resize exactly
COMMIT_EVERY = 16  # images per registry transaction during enroll: progress survives a kill
SCOPES = ("read", "write", "admin")  # each includes the ones before it
NAME_RE = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")

#: An image given to search or verify: a path, or raw bytes with a name for messages (the HTTP API).
ImageInput = str | Path | tuple[bytes, str]


@dataclass
class IndexState:
    index: FaissIndex
    manifest: dict[str, Any]
    mtime: float
    repaired: bool


class Service:
    """One per process. Models load lazily, once; the index is reloaded when another process saved a new one."""

    def __init__(self, settings: Settings, *, encoder: Encoder | None = None, pipeline: Pipeline | None = None):
        self.settings = settings
        self._encoder = encoder
        self._pipeline = pipeline
        self._registry: Registry | None = None
        self._index: IndexState | None = None
        self._lock = FileLock(str(settings.lock_path), timeout=settings.lock_timeout_s)

    # -- lazily built parts -------------------------------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self.settings.home.mkdir(parents=True, exist_ok=True)
            self._registry = Registry(self.settings.db_url)
        return self._registry

    @property
    def model_path(self) -> Path:
        """The model given by flag or IDSVC_MODEL, else the one this home switched to with ``reindex --model``,
        else the shipped default."""
        if "model" in self.settings.model_fields_set:
            return self.settings.model
        active = self.registry.get_meta("active_model_path")
        return Path(active) if active and Path(active).is_file() else self.settings.model

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.model_path, device=self.settings.device,
                                         batch_size=self.settings.batch_size)
        return self._encoder

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = Pipeline(self.settings, self.encoder)
        return self._pipeline

    @property
    def version(self) -> str:
        return self.encoder.version

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()

    @contextmanager
    def write_lock(self, timeout: float | None = None) -> Iterator[None]:
        """Serialise writers across processes (CLI, server workers, cron). Raises ``busy`` on timeout."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock.acquire(timeout=self.settings.lock_timeout_s if timeout is None else timeout):
                yield
        except Timeout:
            raise IdsvcError("busy", f"another idsvc process is writing to {self.settings.home}; try again later",
                             lock=str(self.settings.lock_path)) from None

    # -- index --------------------------------------------------------------------------------------------------
    def index_dir(self, version: str | None = None) -> Path:
        return self.settings.index_dir / (version or self.version)

    def _params(self) -> IndexParams:
        s = self.settings
        return IndexParams(nlist=s.index_nlist, nprobe=s.index_nprobe, pq_m=s.index_pq_m, hnsw_m=s.index_hnsw_m,
                           ef_search=s.index_ef_search)

    def build_index(self, version: str | None = None, kind: str | None = None) -> FaissIndex:
        """A fresh index of every registry vector of ``version``: the registry is the truth."""
        version = version or self.version
        kind = kind or self.settings.index_kind
        parts = list(self.registry.iter_embeddings(version))
        ids = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        vecs = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, self.encoder.dim), np.float32)
        if kind != "flat" and len(ids) < 1000:
            kind = "flat"  # too few vectors to train an ANN index well; exact search is fast at this size anyway
        index = FaissIndex.create(kind, self.encoder.dim, self._params(), train=vecs,
                                  use_gpu=self.settings.index_gpu)
        index.add(ids, vecs)
        return index

    def check_index(self, index: FaissIndex | None, manifest: dict | None) -> list[str]:
        """Reasons the index disagrees with the registry (empty = in agreement)."""
        if index is None or manifest is None:
            return ["index file missing"]
        problems = []
        if manifest.get("model_version") != self.version:
            problems.append(f"index is for model {manifest.get('model_version')}, not {self.version}")
        if index.dim != self.encoder.dim:
            problems.append(f"index dimension {index.dim} != model dimension {self.encoder.dim}")
        reg_ids = self.registry.template_ids(self.version)
        idx_ids = index.ids()
        if len(reg_ids) != len(idx_ids) or ids_checksum(reg_ids) != ids_checksum(idx_ids):
            missing = np.setdiff1d(reg_ids, idx_ids)
            extra = np.setdiff1d(idx_ids, reg_ids)
            problems.append(f"{len(missing)} vectors missing, {len(extra)} extra")
        return problems

    def open_index(self, *, repair: bool = True) -> IndexState:
        """The index for the active model, reloaded if another process saved a newer one, rebuilt from the registry
        (and saved, if no other writer holds the lock) when it is missing, corrupt or disagrees."""
        d = self.index_dir()
        manifest_path = d / "manifest.json"
        mtime = manifest_path.stat().st_mtime if manifest_path.exists() else -1.0
        if self._index is not None and self._index.mtime == mtime:
            return self._index
        index = manifest = None
        try:
            index, manifest = FaissIndex.load(d, self._params(), use_gpu=self.settings.index_gpu)
        except IdsvcError:
            pass
        problems = self.check_index(index, manifest)
        repaired = False
        if problems:
            if not repair:
                raise IdsvcError("index_corrupt", "index disagrees with the registry: " + "; ".join(problems))
            index = self.build_index()
            repaired = True
            try:
                with self.write_lock(timeout=0):
                    manifest = index.save(d, self.version)
                    mtime = manifest_path.stat().st_mtime
            except IdsvcError:  # another writer is busy; serve the in-memory rebuild, it will save its own
                manifest = {"model_version": self.version, "kind": index.kind, "count": index.ntotal}
        assert index is not None and manifest is not None
        self._index = IndexState(index, manifest, mtime, repaired)
        return self._index

    def _save_index(self, index: FaissIndex) -> None:
        d = self.index_dir()
        manifest = index.save(d, self.version)
        self._index = IndexState(index, manifest, (d / "manifest.json").stat().st_mtime, False)
        problems = self.check_index(index, manifest)
        if problems:  # should not happen; the registry wins
            fresh = self.build_index()
            manifest = fresh.save(d, self.version)
            self._index = IndexState(fresh, manifest, (d / "manifest.json").stat().st_mtime, True)

    # -- thresholds ---------------------------------------------------------------------------------------------
    def threshold(self, override: float | None = None) -> tuple[float, str]:
        """(threshold, source): flag/env > calibrated for this model version > the model card."""
        if override is not None:
            return float(override), "argument"
        if self.settings.threshold is not None:
            return float(self.settings.threshold), "settings"
        stored = self.registry.threshold(self.version)
        if stored is not None:
            return float(stored["value"]), "calibrated"
        if self.encoder.threshold is not None:
            return float(self.encoder.threshold), "model_card"
        raise IdsvcError("invalid_argument", "no match threshold: run `idsvc calibrate --save` or pass --threshold")

    # -- enroll -------------------------------------------------------------------------------------------------
    def enroll(self, name: str, paths: list[str], *, progress: Progress | None = None,
               on_total: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Enroll images into ``name`` (created if new). Bad images are reported, never half-stored."""
        files = expand_paths(paths)
        if not files:
            raise IdsvcError("invalid_argument", "no images given")
        if on_total:
            on_total(len(files))
        return self._enroll_items(name, ((str(f), lambda f=f: self.pipeline.load(f)) for f in files), progress)

    def enroll_bytes(self, name: str, images: list[tuple[bytes, str]]) -> dict[str, Any]:
        """The API's enroll: images as (bytes, filename)."""
        if not images:
            raise IdsvcError("invalid_argument", "no images given")
        return self._enroll_items(name, ((src, lambda d=d, s=src: self.pipeline.decode(d, s)) for d, src in images),
                                  None)

    def _enroll_items(self, name: str, items: Any, progress: Progress | None) -> dict[str, Any]:
        if not NAME_RE.match(name) or name.strip() != name:
            raise IdsvcError("invalid_argument", f"invalid identity name {name!r} (1-255 characters, no slashes, "
                             "no control characters, no surrounding spaces)")
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        with self.write_lock():
            state = self.open_index()
            index = state.index
            existed = self.registry.has_identity(name)
            pending: list[tuple[str, LoadedImage, FaceCrop]] = []
            seen: set[str] = set()

            def flush() -> None:
                if not pending:
                    return
                vecs = self.pipeline.embed([fc.aligned.crop for _, _, fc in pending])
                new = [NewTemplate(embedding=v, model_version=self.version, image_sha256=img.sha256, source_path=src,
                                   box=list(fc.face.box), landmarks=fc.face.landmarks.tolist(),
                                   det_prob=fc.face.prob, quality=fc.quality.score(),
                                   quality_details=fc.quality.as_dict())
                       for v, (src, img, fc) in zip(vecs, pending)]
                ids = self.registry.add_templates(name, new)
                crop_paths = {}
                self.settings.crops_dir.mkdir(parents=True, exist_ok=True)
                for tid, (_, _, fc) in zip(ids, pending):
                    p = self.settings.crops_dir / f"{tid}.png"
                    save_crop(str(p), resize_crop(fc.aligned.crop, CROP_SIZE))
                    crop_paths[tid] = str(p)
                self.registry.set_crop_paths(crop_paths)
                index.add(np.array(ids), vecs)
                for tid, (src, _, fc) in zip(ids, pending):
                    accepted.append({"path": src, "template_id": tid, "quality": fc.quality.as_dict()})
                pending.clear()

            for src, load in items:
                try:
                    image = load()
                    if image.sha256 in seen:
                        skipped.append({"path": src, "reason": "same image given twice"})
                        continue
                    seen.add(image.sha256)
                    owner = self.registry.enrolled_shas([image.sha256]).get(image.sha256)
                    if owner is not None:
                        if owner == name:
                            skipped.append({"path": src, "reason": "already enrolled"})
                        else:
                            rejected.append({"path": src, "code": "invalid_argument",
                                             "reason": f"{src}: already enrolled as {owner!r}"})
                        continue
                    pending.append((src, image, self.pipeline.one_face(image)))
                except IdsvcError as exc:
                    rejected.append({"path": src, "code": exc.code, "reason": exc.message})
                if len(pending) >= COMMIT_EVERY:
                    flush()
                if progress:
                    progress(1)
            flush()
            if accepted:
                self._save_index(index)
        return {"identity": name, "created": bool(accepted) and not existed, "model_version": self.version,
                "accepted": accepted, "rejected": rejected, "skipped": skipped}

    # -- search and verify --------------------------------------------------------------------------------------
    def _image(self, image: ImageInput) -> LoadedImage:
        if isinstance(image, tuple):
            return self.pipeline.decode(*image)
        return self.pipeline.load(image)

    def search(self, image: ImageInput, *, top_k: int = 5, threshold: float | None = None,
               all_faces: bool = False) -> dict[str, Any]:
        """Identities ranked by score (the best over each identity's templates), per face."""
        if top_k < 1:
            raise IdsvcError("invalid_argument", "--top-k must be at least 1")
        img = self._image(image)
        thr, source = self.threshold(threshold)
        crops = self.pipeline.faces(img) if all_faces else [self.pipeline.one_face(img, strict=False)]
        detected = len(crops) if all_faces else (crops[0].faces_in_image if crops else 0)
        if not crops:
            raise IdsvcError("no_face", f"{img.source}: no face found", path=img.source)
        vecs = self.pipeline.embed([c.aligned.crop for c in crops])
        index = self.open_index().index
        faces = []
        for fc, vec in zip(crops, vecs):
            candidates = self._rank(index, vec, top_k)
            for c in candidates:
                c["match"] = c["score"] >= thr
            best = candidates[0] if candidates and candidates[0]["match"] else None
            faces.append({"box": [round(v, 1) for v in fc.face.box], "det_prob": round(fc.face.prob, 4),
                          "quality": fc.quality.as_dict(), "identity": best["name"] if best else None,
                          "score": candidates[0]["score"] if candidates else None, "candidates": candidates})
        return {"image": img.source, "model_version": self.version, "threshold": thr, "threshold_source": source,
                "identity": faces[0]["identity"], "score": faces[0]["score"], "faces_detected": detected, "faces": faces}

    def _rank(self, index: FaissIndex, vec: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        """Top identities: fetch more templates than identities wanted, keep each identity's best."""
        total = index.ntotal
        if total == 0:
            return []
        k = min(total, top_k * 8 + 32)
        while True:
            scores, ids = index.search(vec[None, :], k)
            owners = self.registry.identity_of_templates([int(i) for i in ids[0] if i >= 0])
            best: dict[int, dict[str, Any]] = {}
            for s, i in zip(scores[0], ids[0]):
                if i < 0 or int(i) not in owners:
                    continue
                iid, name = owners[int(i)]
                if iid not in best:
                    best[iid] = {"name": name, "score": round(float(s), 6), "template_id": int(i)}
            if len(best) >= top_k or k >= total:
                break
            k = min(total, k * 4)
        return sorted(best.values(), key=lambda c: -c["score"])[:top_k]

    def verify(self, a: ImageInput, b: ImageInput, *, threshold: float | None = None) -> dict[str, Any]:
        """Are the faces in two photos the same person?"""
        thr, source = self.threshold(threshold)
        fa = self.pipeline.one_face(self._image(a), strict=False)
        fb = self.pipeline.one_face(self._image(b), strict=False)
        va, vb = self.pipeline.embed([fa.aligned.crop, fb.aligned.crop])
        score = float(va @ vb)
        return {"score": round(score, 6), "threshold": thr, "threshold_source": source, "same": score >= thr,
                "model_version": self.version}

    def verify_identity(self, image: ImageInput, name: str, *, threshold: float | None = None) -> dict[str, Any]:
        """Is this the enrolled person ``name``? The score is the best over their templates of this model."""
        thr, source = self.threshold(threshold)
        vecs, others = self.registry.identity_embeddings(name, self.version)
        if not len(vecs):
            raise IdsvcError("model_mismatch", f"{name!r} has no templates for model {self.version} (only "
                             f"{', '.join(others) or 'none'}); run `idsvc reindex --model`", name=name)
        fc = self.pipeline.one_face(self._image(image), strict=False)
        v = self.pipeline.embed([fc.aligned.crop])[0]
        score = float((vecs @ v).max())
        return {"identity": name, "score": round(score, 6), "threshold": thr, "threshold_source": source,
                "same": score >= thr, "model_version": self.version}

    # -- identities ---------------------------------------------------------------------------------------------
    def list_identities(self) -> list[dict[str, Any]]:
        return self.registry.identities()

    def show_identity(self, name: str) -> dict[str, Any]:
        ident = self.registry.identity(name)
        ident["template_list"] = self.registry.templates_of(name)
        return ident

    def rename_identity(self, old: str, new: str) -> dict[str, Any]:
        if not NAME_RE.match(new) or new.strip() != new:
            raise IdsvcError("invalid_argument", f"invalid identity name {new!r}")
        with self.write_lock():
            return self.registry.rename(old, new)

    def delete_identity(self, name: str) -> dict[str, Any]:
        """Remove the identity's rows, vectors and stored crops."""
        with self.write_lock():
            index = self.open_index().index
            ids, crops = self.registry.delete_identity(name)
            index.remove(ids)
            self._save_index(index)
            for p in crops:
                Path(p).unlink(missing_ok=True)
        return {"identity": name, "deleted_templates": len(ids)}

    def delete_template(self, template_id: int) -> dict[str, Any]:
        """Remove one template: its row, its vector and its crop."""
        with self.write_lock():
            index = self.open_index().index
            crop = self.registry.delete_template(template_id)
            index.remove([template_id])
            self._save_index(index)
            if crop:
                Path(crop).unlink(missing_ok=True)
        return {"deleted_template": template_id}

    # -- API keys -----------------------------------------------------------------------------------------------
    def create_key(self, name: str, scope: str) -> dict[str, Any]:
        """A new API key. The secret is returned once; only its sha256 is stored."""
        import hashlib
        import secrets

        if scope not in SCOPES:
            raise IdsvcError("invalid_argument", f"--scope must be one of {', '.join(SCOPES)}")
        secret = "idsvc_" + secrets.token_urlsafe(32)
        key = self.registry.add_key(name, scope, secret[:10], hashlib.sha256(secret.encode()).hexdigest())
        return {**key, "key": secret}

    def authenticate(self, secret: str | None, needed: str) -> dict[str, Any]:
        """The key's record if it exists, is not revoked and has at least scope ``needed``.
        Raises ``unauthorized`` or ``forbidden``."""
        import hashlib

        if not secret:
            raise IdsvcError("unauthorized", "missing API key (send Authorization: Bearer <key>)")
        key = self.registry.key_by_hash(hashlib.sha256(secret.encode()).hexdigest())
        if key is None:
            raise IdsvcError("unauthorized", "unknown or revoked API key")
        if SCOPES.index(key["scope"]) < SCOPES.index(needed):
            raise IdsvcError("forbidden", f"this key has scope {key['scope']!r}; {needed!r} is needed",
                             scope=key["scope"], needed=needed)
        return key

    # -- status and reindex -------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = self.open_index()
        counts = self.registry.counts()
        problems = self.check_index(state.index, state.manifest)
        try:
            thr, source = self.threshold()
        except IdsvcError:
            thr, source = None, None
        other = {v: n for v, n in counts["templates_by_model"].items() if v != self.version}
        return {
            "home": str(self.settings.home), "db": redact(self.settings.db_url),
            "schema": self.registry.schema_revision(),
            "model": {"path": str(self.model_path), "name": self.encoder.card["name"], "version": self.version,
                      "embedding_size": self.encoder.dim, "device": str(self.encoder.device)},
            "identities": counts["identities"], "templates": counts["templates"],
            "templates_other_models": other,
            "index": {"kind": state.index.kind, "vectors": state.index.ntotal, "in_agreement": not problems,
                      "problems": problems, "rebuilt_on_open": state.repaired,
                      "path": str(self.index_dir())},
            "threshold": thr, "threshold_source": source,
        }

    def reindex(self, *, kind: str | None = None, model: Path | None = None,
                progress: Callable[..., None] | None = None) -> dict[str, Any]:
        """Rebuild the index from the registry into a new file and swap it in; readers keep the old one until then.

        With ``model``, first re-embed every template's stored crop with the new model (progress is kept in the
        registry, so a killed run resumes), then switch every template to the new version in one transaction.
        A second reindex (or any writer) running at the same time makes this one refuse with ``busy``.
        """
        import time

        with self.write_lock(timeout=0):
            t0 = time.perf_counter()
            result: dict[str, Any] = {}
            if model is not None:
                result["upgrade"] = self._upgrade_model(Path(model), progress)
            index = self.build_index(kind=kind)
            self._save_index(index)
            result.update({"model_version": self.version, "kind": index.kind, "vectors": index.ntotal,
                           "seconds": round(time.perf_counter() - t0, 3)})
            return result

    def _upgrade_model(self, path: Path, progress: Callable[..., None] | None) -> dict[str, Any]:
        new = load_encoder(path, device=self.settings.device, batch_size=self.settings.batch_size)
        rows = self.registry.template_rows(["id", "crop_path", "source_path", "image_sha256", "model_version"])
        old_versions = sorted({r["model_version"] for r in rows} - {new.version})
        done = self.registry.pending_ids(new.version)
        todo = [r for r in rows if r["id"] not in done and r["model_version"] != new.version]
        already = sum(1 for r in rows if r["model_version"] == new.version)
        if progress:
            progress(len(rows) - len(todo), total=len(rows))
        for r in rows:  # templates already on the new version need no pending vector: carry them over as-is
            if r["model_version"] == new.version and r["id"] not in done:
                vec = self.registry.embeddings_by_id([r["id"]])[r["id"]][1]
                self.registry.add_pending(new.version, {r["id"]: vec})
        step = max(1, self.settings.batch_size)
        for i in range(0, len(todo), step):
            part = todo[i:i + step]
            crops = np.stack([resize_crop(self._template_crop(r), new.input_size) for r in part])
            vecs = new.embed(crops)
            self.registry.add_pending(new.version, {r["id"]: v for r, v in zip(part, vecs)})  # committed: resumable
            if progress:
                progress(len(part))
        moved = self.registry.switch_model(new.version)
        self.registry.set_meta("active_model_path", str(path.resolve()))
        self._encoder = new
        self._pipeline = None
        self._index = None
        return {"from": old_versions, "to": new.version, "templates": moved, "re_embedded": len(todo),
                "resumed_from": len(done), "already_on_new_version": already, "model_path": str(path)}

    def _template_crop(self, row: dict[str, Any]) -> np.ndarray:
        """The stored aligned crop, or (if it was lost) the crop re-made from the source photo when its hash still
        matches. Raises ``internal`` when neither exists."""
        from idsvc.align import read_crop

        crop_path = row.get("crop_path")
        if crop_path and Path(crop_path).is_file():
            return read_crop(crop_path)
        src = row.get("source_path")
        if src and Path(src).is_file():
            image = self.pipeline.load(src)
            if image.sha256 == row["image_sha256"]:
                return resize_crop(self.pipeline.one_face(image, strict=False).aligned.crop, CROP_SIZE)
        raise IdsvcError("internal", f"template {row['id']}: its crop {crop_path} is missing and its source photo "
                         "is gone or changed; delete the template's identity or restore the crop")

    # -- doctor -------------------------------------------------------------------------------------------------
    def doctor(self, *, fix: bool = False) -> dict[str, Any]:
        """Check the index and crops against the registry without repairing on open; ``fix`` repairs from the
        registry (index rebuilt; lost crops re-made from their source photos where those still match)."""
        problems: list[dict[str, Any]] = []
        d = self.index_dir()
        try:
            index, manifest = FaissIndex.load(d)
        except IdsvcError as exc:
            index, manifest = None, None
            problems.append({"check": "index_file", "problem": exc.message})
        if index is not None and manifest is not None:
            if manifest.get("model_version") != self.version:
                problems.append({"check": "model_version", "problem": f"index is for {manifest.get('model_version')}"})
            if index.dim != self.encoder.dim:
                problems.append({"check": "dimension", "problem": f"index {index.dim}-d, model {self.encoder.dim}-d"})
            reg_ids = self.registry.template_ids(self.version)
            idx_ids = index.ids()
            missing = np.setdiff1d(reg_ids, idx_ids)
            extra = np.setdiff1d(idx_ids, reg_ids)
            if len(missing):
                problems.append({"check": "missing_vectors", "problem": f"{len(missing)} templates have no vector",
                                 "ids": missing[:20].tolist()})
            if len(extra):
                problems.append({"check": "extra_vectors", "problem": f"{len(extra)} vectors have no template",
                                 "ids": extra[:20].tolist()})
            if manifest.get("ids_sha256") != ids_checksum(idx_ids):
                problems.append({"check": "manifest", "problem": "manifest id checksum does not match the index"})
        rows = self.registry.template_rows(["id", "crop_path", "source_path", "image_sha256", "model_version"])
        lost = [r for r in rows if not r["crop_path"] or not Path(r["crop_path"]).is_file()]
        if lost:
            problems.append({"check": "crops", "problem": f"{len(lost)} templates have no stored crop",
                             "ids": [r["id"] for r in lost[:20]]})
        others = {r["model_version"] for r in rows} - {self.version}
        if others:
            problems.append({"check": "model_versions", "problem": "templates of other model versions: "
                             + ", ".join(sorted(others)) + " (run `idsvc reindex --model`)"})
        fixed: list[str] = []
        if fix and problems:
            with self.write_lock():
                for r in lost:
                    try:
                        crop = self._template_crop({**r, "crop_path": None})
                    except IdsvcError:
                        continue
                    from idsvc.align import save_crop

                    p = self.settings.crops_dir / f"{r['id']}.png"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    save_crop(str(p), crop)
                    self.registry.set_crop_paths({r["id"]: str(p)})
                    fixed.append(f"crop of template {r['id']} re-made from its source photo")
                if any(p["check"] not in ("crops", "model_versions") for p in problems):
                    self._save_index(self.build_index())
                    fixed.append("index rebuilt from the registry")
            after = self.doctor(fix=False)
            return {"problems": problems, "fixed": fixed, "remaining": after["problems"], "ok": not after["problems"]}
        return {"problems": problems, "fixed": fixed, "remaining": problems, "ok": not problems}
