"""The one door: every operation the CLI and the HTTP API offer is one method here, over one ``Home`` whose active
model (the flag's, else the one ``reindex --model`` switched to, else the shipped default) is the only model any
operation uses. Each method returns a plain dict whose keys are the ``--json`` and API field names.

Writes follow one order: take the write lock, commit to the registry, update the index, save it atomically, check
the two agree. A crash at any point leaves a registry that is right and an index that the next open notices is stale
(by count and id checksum) and rebuilds. The work itself lives in one module per job (``enroll``, ``search``,
``verify``, ``identities``, ``upgrade``, ``doctor``, ``calibration``, ``evaluation``, ``auth``); this class only
composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput
from idsvc.home import Home
from idsvc.jobs import doctor, enroll, identities, search, upgrade, verify
from idsvc.jobs import keys as auth
from idsvc.jobs.thresholds import resolve_threshold
from idsvc.settings import Settings
from idsvc.storage.vectors import BEHIND
from idsvc.storage.write_lock import ensure_home

if TYPE_CHECKING:
    from idsvc.encoders.protocol import EmbeddingModel
    from idsvc.home.pipeline import Pipeline
    from idsvc.jobs.calibration import CalibrationRequest
    from idsvc.training import TrainConfig

Progress = Callable[..., None]


class Service:
    """One per process. Nothing heavy loads until an operation needs it: listing identities opens only the
    database; the models load once, on the first operation that embeds a face."""

    def __init__(self, settings: Settings, *, encoder: EmbeddingModel | None = None, pipeline: Pipeline | None = None):
        self.settings = settings
        self.home = Home(settings, encoder=encoder, pipeline=pipeline)

    def close(self) -> None:
        self.home.close()

    def warm_up(self) -> None:
        """Open the registry, load the models and the index now (a server does this before its first request)."""
        self.home.model.pipeline  # noqa: B018 - loading is the point
        self.home.index.open()

    @property
    def version(self) -> str:
        return self.home.model.version

    # -- faces ----------------------------------------------------------------------------------------------------
    def enroll(self, name: str, paths: list[str], *, progress: Progress | None = None,
               on_total: Callable[[int], None] | None = None, aligned: bool = False,
               recursive: bool = False) -> dict[str, Any]:
        """Enroll image files, folders and globs into ``name`` (created if new). A folder whose photos sit in
        several sub-folders is refused unless ``recursive`` says they are all this one person."""
        from idsvc.faces.images import check_one_person, expand_paths

        name = enroll.check_name(name)
        if not recursive:
            check_one_person(paths)
        files = expand_paths(paths)  # checked before any model loads
        if not files:
            raise IdsvcError("invalid_argument", "no images given")
        if on_total:
            on_total(len(files))
        pipeline = self.home.model.pipeline
        items = ((str(f), partial(pipeline.load, f)) for f in files)
        return enroll.enroll(self.home, name, items, progress, aligned=aligned)

    def enroll_each(self, folder: Path, *, progress: Progress | None = None,
                    on_total: Callable[[int], None] | None = None, aligned: bool = False) -> dict[str, Any]:
        """One identity per sub-folder of ``folder``, named after it (face_recognition's ``known/<name>/``).
        Every name is checked before anything is stored. Raises ``file_not_found``, ``invalid_argument``."""
        from idsvc.faces.images import people_folders

        if not folder.is_dir():
            raise IdsvcError("file_not_found", f"{folder}: no such folder", path=str(folder))
        people = people_folders(folder)
        if not people:
            raise IdsvcError("invalid_argument", f"{folder} has no sub-folders with photos (one per person)")
        for name in people:
            enroll.check_name(name)
        if on_total:
            on_total(sum(len(files) for files in people.values()))
        pipeline = self.home.model.pipeline
        groups = [(name, [(str(f), partial(pipeline.load, f)) for f in files]) for name, files in people.items()]
        results = enroll.enroll_many(self.home, groups, progress, aligned=aligned)
        return {"folder": str(folder), "identities": results, **_totals(results)}

    def detect(self, paths: list[str], *, crops_dir: Path | None = None,
               progress: Progress | None = None) -> dict[str, Any]:
        """Every face of each photo (no encoder is loaded). Raises ``file_not_found`` for a missing path, before
        any model loads."""
        from idsvc.faces.images import existing_files
        from idsvc.jobs.detection import detect_photos

        files = existing_files(paths)
        return detect_photos(self._detection_pipeline(), files, crops_dir, progress)

    def detect_uploads(self, images: list[tuple[bytes, str]]) -> dict[str, Any]:
        """``detect`` for the API: uploads as (bytes, filename); a bad one carries its error, the rest go on."""
        from idsvc.jobs.detection import detect_photos

        return detect_photos(self._detection_pipeline(), images)

    def _detection_pipeline(self) -> Pipeline:
        """Detection alone, on idsvc's crop template; the loaded model's detector when there is one."""
        from idsvc.home.pipeline import Pipeline
        from idsvc.storage.crops import CROP_SIZE

        model = self.home.model
        return Pipeline(self.settings, detector=model.pipeline.detector if model.loaded else None,
                        crop_size=CROP_SIZE)

    def embed_files(self, paths: list[str]) -> list[Path]:
        """The photos ``embed`` will read (checked before any model loads). Raises ``file_not_found``."""
        from idsvc.faces.images import existing_files

        return existing_files(paths)

    def embed_to_npy(self, files: list[Path], out: Path, *, aligned: bool = False,
                     progress: Progress | None = None) -> dict[str, Any]:
        from idsvc.jobs.embedding import write_npy

        return write_npy(self.home.model.pipeline, self.home.model.version, files, out, aligned=aligned,
                         progress=progress)

    def embed_each(self, files: Sequence[ImageInput], *,
                   aligned: bool = False) -> Iterator[dict[str, Any]]:
        """One JSON-ready record per photo (a path, or an upload's bytes and name), as each finishes."""
        from idsvc.jobs.embedding import embed_each

        version = self.home.model.version
        for f, vec, err in embed_each(self.home.model.pipeline, files, aligned=aligned):
            yield ({"path": f, "model_version": version, "embedding": [round(float(x), 7) for x in vec]}
                   if vec is not None else {"path": f, "model_version": version, "error": err})

    def export(self, out: Path) -> dict[str, Any]:
        from idsvc.jobs.archive import export_home

        return export_home(self.home, out)

    def import_archive(self, src: Path, *, reembed: bool = False) -> dict[str, Any]:
        from idsvc.jobs.archive import import_archive

        return import_archive(self.home, src, reembed=reembed)

    def enroll_bytes(self, name: str, images: list[tuple[bytes, str]], *, aligned: bool = False) -> dict[str, Any]:
        """The API's enroll: images as (bytes, filename)."""
        name = enroll.check_name(name)
        if not images:
            raise IdsvcError("invalid_argument", "no images given")
        pipeline = self.home.model.pipeline
        items = ((src, partial(pipeline.decode, d, src)) for d, src in images)
        return enroll.enroll(self.home, name, items, aligned=aligned, commit_every=None)

    def enroll_each_bytes(self, images: list[tuple[bytes, str]], *, aligned: bool = False) -> dict[str, Any]:
        """The API's ``enroll --each``: each upload's file name is ``PERSON/PHOTO`` (the last folder names the
        identity), as a browser sends a folder of people folders. A photo without a valid person folder is rejected
        in ``unnamed``; the others are enrolled, one identity at a time in order of first mention."""
        people: dict[str, list[tuple[bytes, str]]] = {}
        unnamed: list[dict[str, Any]] = []
        for data, filename in images:
            parts = filename.replace("\\", "/").split("/")
            person = parts[-2] if len(parts) >= 2 else ""
            try:
                people.setdefault(enroll.check_name(person), []).append((data, filename))
            except IdsvcError:
                unnamed.append({"path": filename, "code": "invalid_argument",
                                "reason": f"{filename}: name the file PERSON/PHOTO (a valid identity name as its "
                                          "folder)"})
        pipeline = self.home.model.pipeline
        groups = [(name, [(src, partial(pipeline.decode, d, src)) for d, src in imgs]) for name, imgs in people.items()]
        results = enroll.enroll_many(self.home, groups, aligned=aligned, commit_every=None) if groups else []
        counts = _totals(results)
        return {"identities": results, "unnamed": unnamed, **counts, "rejected": counts["rejected"] + len(unnamed)}

    def search(self, image: ImageInput, *, top_k: int = 5, threshold: float | None = None,
               all_faces: bool = False, aligned: bool = False) -> dict[str, Any]:
        return search.search(self.home, image, top_k=top_k, threshold=threshold, all_faces=all_faces,
                             aligned=aligned)

    def search_many(self, paths: list[str], *, top_k: int = 5, threshold: float | None = None,
                    all_faces: bool = False, aligned: bool = False) -> tuple[int, Iterator[dict[str, Any]]]:
        """(number of photos, one result per photo as each finishes). Paths are checked before any model loads;
        a photo that fails carries its error and the rest go on."""
        from idsvc.faces.images import existing_files

        files = existing_files(paths)
        return len(files), self.search_each(files, top_k=top_k, threshold=threshold, all_faces=all_faces,
                                            aligned=aligned)

    def search_each(self, images: Sequence[ImageInput], *, top_k: int = 5, threshold: float | None = None,
                    all_faces: bool = False, aligned: bool = False) -> Iterator[dict[str, Any]]:
        """One search per image (a path or an upload's bytes and name), each result keyed by the image's name."""
        from idsvc.faces.images import source_name
        from idsvc.jobs import batch

        if not all_faces:  # the main face of each: detected and embedded in chunks (search.search_many)
            items = list(images)
            answers = search.search_many(self.home, items, top_k=top_k, threshold=threshold, aligned=aligned)
            return ({"path": source_name(f)} | a for f, a in zip(items, answers))
        return batch.each(list(images), lambda f: search.search(
            self.home, f, top_k=top_k, threshold=threshold, all_faces=all_faces, aligned=aligned),
            lambda f: {"path": source_name(f)})

    def verify_pairs(self, pairs_file: Path, *, threshold: float | None = None,
                     aligned: bool = False) -> tuple[int, Iterator[dict[str, Any]]]:
        """(number of pairs, one verification per line of ``pairs_file`` as each finishes)."""
        from idsvc.jobs import batch

        pairs = batch.read_pairs_file(pairs_file)
        return len(pairs), batch.each(pairs, lambda p: verify.verify(
            self.home, p[0], p[1], threshold=threshold, aligned=aligned), lambda p: {"a": p[0], "b": p[1]})

    def verify(self, a: ImageInput, b: ImageInput, *, threshold: float | None = None,
               aligned: bool = False) -> dict[str, Any]:
        return verify.verify(self.home, a, b, threshold=threshold, aligned=aligned)

    def verify_identity(self, image: ImageInput, name: str, *, threshold: float | None = None,
                        aligned: bool = False) -> dict[str, Any]:
        return verify.verify_identity(self.home, image, name, threshold=threshold, aligned=aligned)

    # -- identities -----------------------------------------------------------------------------------------------
    def list_identities(self) -> list[dict[str, Any]]:
        return identities.list_identities(self.home)

    def show_identity(self, name: str, *, server_paths: bool = True) -> dict[str, Any]:
        """An identity and its templates. Without ``server_paths`` (an API key below admin), each template's source is
        only its file name and its crop path is withheld: a client has no use for the server's folders."""
        ident = identities.show_identity(self.home, name)
        if not server_paths:
            for tpl in ident["template_list"]:
                tpl.update(source_path=_file_name(tpl.get("source_path")), crop_path=None)
        return ident

    def rename_identity(self, old: str, new: str) -> dict[str, Any]:
        return identities.rename_identity(self.home, old, new)

    def delete_identity(self, name: str) -> dict[str, Any]:
        return identities.delete_identity(self.home, name)

    def delete_template(self, template_id: int) -> dict[str, Any]:
        return identities.delete_template(self.home, template_id)

    # -- thresholds, calibration, evaluation ----------------------------------------------------------------------
    def threshold(self, override: float | None = None) -> tuple[float, str]:
        return resolve_threshold(self.home, override)

    def thresholds(self) -> list[dict[str, Any]]:
        return self.home.registry.thresholds()

    def calibrate(self, request: CalibrationRequest, progress: Progress | None = None) -> dict[str, Any]:
        from idsvc.jobs.calibration import run_calibration

        return run_calibration(self.home, request, progress)

    def evaluate(self, images: Path, pairs: Path, *, progress: Progress | None = None, plot: Path | None = None,
                 write_card: bool = False) -> dict[str, Any]:
        from idsvc.jobs.evaluation import evaluate_pairs_file

        return evaluate_pairs_file(self.home, images, pairs, progress=progress, plot=plot, write_card=write_card)

    # -- models ---------------------------------------------------------------------------------------------------
    def model_info(self, path: Path | None = None) -> dict[str, Any]:
        """A checkpoint's card; by default the active model's (no weights are loaded into a network)."""
        from idsvc.encoders.checkpoint import model_version, read_checkpoint

        p = path or self.home.model.path
        card = read_checkpoint(p)["card"]
        card["version"] = model_version(card)
        return {"path": str(p), "active": path is None, "card": card}

    def import_facenet_keras(self, h5: Path, out: Path, *, name: str, fp16: bool) -> dict[str, Any]:
        from idsvc.encoders.keras_import import import_to_checkpoint

        card = import_to_checkpoint(h5, out, name=name, fp16=fp16)
        return {"path": str(out), "card": card}

    def import_sface(self, onnx_path: Path | None, out: Path, *, name: str) -> dict[str, Any]:
        from idsvc.encoders.sface import import_sface

        card = import_sface(onnx_path, out, name=name)
        return {"path": str(out), "card": card}

    def fuse_models(self, paths: list[Path], weights: list[float], out: Path, *, name: str,
                    link: bool = False) -> dict[str, Any]:
        from idsvc.encoders.load import fuse

        card = fuse(paths, weights, out, name=name, link=link)
        return {"path": str(out), "card": card}

    def train(self, config: TrainConfig, event: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        from idsvc.training import train

        return {"path": str(config.out), "card": train(config, self.settings, event)}

    # -- API keys -------------------------------------------------------------------------------------------------
    def create_key(self, name: str, scope: str) -> dict[str, Any]:
        return auth.create_key(self.home.registry, name, scope)

    def list_keys(self) -> list[dict[str, Any]]:
        return self.home.registry.keys()

    def revoke_key(self, name: str) -> dict[str, Any]:
        self.home.registry.revoke_key(name)
        return {"revoked": name}

    def authenticate(self, secret: str | None, needed: str) -> dict[str, Any]:
        return auth.authenticate(self.home.registry, secret, needed)

    # -- the database schema --------------------------------------------------------------------------------------
    def migrate(self, revision: str = "head", *, down: bool = False) -> dict[str, Any]:
        """Alembic up or down, without the automatic upgrade that opening the registry does."""
        from idsvc.storage.registry import make_engine, migrate, redact

        url = self.settings.db_url
        if self.settings.db is None:
            ensure_home(self.settings.home)
        engine = make_engine(url)
        try:
            return {"db": redact(url), "revision": migrate(engine, revision, down=down)}
        finally:
            engine.dispose()

    def migrate_home(self, to_db: str, to_vectors: str, *, to_home: Path | None = None, batch: int = 200,
                     progress: Progress | None = None) -> dict[str, Any]:
        """Copy this home to other backends (``idsvc migrate``); resumable, the source untouched."""
        import re

        from idsvc.jobs.home_copy import copy_home, target_home
        from idsvc.settings import VECTORS_PATTERN

        if not re.fullmatch(VECTORS_PATTERN, to_vectors):
            raise IdsvcError("invalid_argument", f"--to-vectors {to_vectors!r}: use faiss, milvus:///path/file.db "
                             "or http://host:19530")
        target = target_home(self.home, to_db, to_vectors, to_home)
        try:
            return copy_home(self.home, target, batch=batch, progress=progress)
        finally:
            target.close()

    # -- operations -----------------------------------------------------------------------------------------------
    def status(self, *, server_paths: bool = True) -> dict[str, Any]:
        """Counts, model, threshold and whether the saved index agrees with the registry — read from the model card
        and the index manifest, so it loads neither the model nor the index (``doctor`` looks deeper). Without
        ``server_paths`` the home, database URL and index location are withheld and the model is named by its file
        name only."""
        from idsvc.encoders.int8 import numerics
        from idsvc.storage.registry import redact

        home, model = self.home, self.home.model
        manifest, problems = home.index.check_manifest()
        counts = home.registry.counts()
        try:
            thr: float | None
            thr, source = resolve_threshold(home)
        except IdsvcError:
            thr, source = None, None
        report = {
            "home": str(self.settings.home), "db": redact(self.settings.db_url),
            "schema": home.registry.schema_revision(),
            "model": {"path": str(model.path), "name": model.card["name"], "version": model.version,
                      "embedding_size": model.dim,
                      "device": str(model.encoder.device) if model.loaded else f"{self.settings.device} (not loaded)",
                      "numerics": numerics(model.encoder) if model.loaded else None},
            "identities": counts["identities"], "templates": counts["templates"],
            "templates_other_models": {v: n for v, n in counts["templates_by_model"].items() if v != model.version},
            "index": {"kind": (manifest or {}).get("kind"), "vectors": (manifest or {}).get("count", 0),
                      "in_agreement": not problems, "problems": [p["problem"] for p in problems],
                      "path": home.index.location()},
            "threshold": thr, "threshold_source": source,
        }
        if not server_paths:  # an API key below admin: counts and health, not where things live on the server
            report.update(home=None, db=None)
            report["model"]["path"] = Path(report["model"]["path"]).name
            report["index"]["path"] = None
        return report

    def readiness(self) -> dict[str, Any]:
        """Can this process answer searches now? The model is loaded, the database answers, the saved index agrees
        with the registry. Each check's verdict is "ok" or why not; a probe reports, it never raises."""
        checks = {"model": "ok" if self.home.model.loaded else "not loaded"}
        try:
            self.home.registry.counts()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "not ready", said in one line
            checks["database"] = exc.message if isinstance(exc, IdsvcError) else exc.__class__.__name__
        if checks["database"] == "ok":
            _, problems = self.home.index.check_manifest()
            # behind the registry's last commit: the next search catches up, so that alone does not make us unready
            checks["index"] = "; ".join(p["problem"] for p in problems if p["check"] != BEHIND) or "ok"
        else:
            checks["index"] = "not checked (no database)"
        return {"ready": all(v == "ok" for v in checks.values()), "checks": checks}

    def reindex(self, *, kind: str | None = None, model: Path | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
        return upgrade.reindex(self.home, kind=kind, model=model, progress=progress)

    def doctor(self, *, fix: bool = False) -> dict[str, Any]:
        return doctor.doctor(self.home, fix=fix)


def _file_name(path: str | None) -> str | None:
    """A template's source as a client may see it: the file name of a server path, an upload's label as it is."""
    if path is None or path.startswith("upload:"):
        return path
    return Path(path).name


def _totals(results: list[dict[str, Any]]) -> dict[str, int]:
    """Photos accepted, rejected and skipped over several identities' enroll results."""
    return {k: sum(len(r[k]) for r in results) for k in ("accepted", "rejected", "skipped")}
