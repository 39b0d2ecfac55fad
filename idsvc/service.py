"""The one door: every operation the CLI and the HTTP API offer is one method here, over one ``Home`` whose active
model (the flag's, else the one ``reindex --model`` switched to, else the shipped default) is the only model any
operation uses. Each method takes photos as ``ImageInput`` — a path (a file, a folder, a glob) or an upload's
(bytes, name) — whichever skin calls it, and returns one typed result (``idsvc.results``): the CLI writes it with
``--json``, the API sends it as its response model.

Writes follow one order: take the write lock, commit to the registry, update the index, save it atomically, check
the two agree. A crash at any point leaves a registry that is right and an index that the next open notices is stale
(by count and id checksum) and rebuilds. The work itself lives in one module per job (``idsvc.jobs``); this class only
composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput
from idsvc.home import Home
from idsvc.jobs import doctor, enroll, identities, keys, search, status, upgrade, verify
from idsvc.results import (
    BulkEnrollResult,
    Calibration,
    Caller,
    DeletedIdentity,
    DeletedTemplate,
    DetectResult,
    DoctorReport,
    Each,
    Embedding,
    EmbeddingsFile,
    EnrollResult,
    Evaluation,
    Exported,
    HomeCopied,
    Identity,
    IdentityDetail,
    IdentityList,
    Imported,
    KeyList,
    ModelInfo,
    ModelWritten,
    NewKey,
    Ready,
    Reindexed,
    RevokedKey,
    SchemaRevision,
    SearchAnswer,
    Status,
    ThresholdList,
    VerifyAnswer,
    VerifyIdentityResult,
)
from idsvc.settings import Settings

if TYPE_CHECKING:
    from idsvc.encoders.protocol import EmbeddingModel
    from idsvc.home.pipeline import Pipeline
    from idsvc.jobs.calibration import CalibrationRequest
    from idsvc.jobs.verify import Pair
    from idsvc.training import TrainConfig

#: ``progress(n, total=None, description=None)``: n more done; the total when it becomes known.
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

    # -- faces ----------------------------------------------------------------------------------------------------
    def enroll(self, name: str, images: Sequence[ImageInput], *, aligned: bool = False, recursive: bool = False,
               atomic: bool = False, progress: Progress | None = None) -> EnrollResult:
        """Enroll photos into ``name`` (created if new). ``atomic``: one transaction for all (an HTTP request), not
        one per batch. See ``idsvc.jobs.enroll.enroll``."""
        return enroll.enroll(self.home, name, images, progress, aligned=aligned, recursive=recursive, atomic=atomic)

    def enroll_each(self, images: Sequence[ImageInput], *, aligned: bool = False, atomic: bool = False,
                    progress: Progress | None = None) -> BulkEnrollResult:
        """One identity per person folder: a folder of people folders, or uploads named PERSON/PHOTO."""
        return enroll.enroll_each(self.home, images, progress, aligned=aligned, atomic=atomic)

    def detect(self, images: Sequence[ImageInput], *, crops_dir: Path | None = None,
               progress: Progress | None = None) -> DetectResult:
        """Every face of each photo, on idsvc's crop template; no encoder is loaded (the loaded model's detector is
        used when there is one)."""
        from idsvc.devices import resolve_device
        from idsvc.faces.reader import FaceReader
        from idsvc.jobs.detection import detect
        from idsvc.storage.crops import CROP_SIZE

        model = self.home.model
        detector = model.pipeline.detector if model.loaded else None
        device = None if detector is not None else resolve_device(self.settings.device)
        return detect(FaceReader(self.settings, detector, crop_size=CROP_SIZE, device=device), images, crops_dir,
                      progress)

    @overload
    def embed(self, images: Sequence[ImageInput], *, aligned: bool = ..., out: None = None,
              progress: Progress | None = ...) -> Each[Embedding]: ...

    @overload
    def embed(self, images: Sequence[ImageInput], *, aligned: bool = ..., out: Path,
              progress: Progress | None = ...) -> EmbeddingsFile: ...

    def embed(self, images: Sequence[ImageInput], *, aligned: bool = False, out: Path | None = None,
              progress: Progress | None = None) -> Each[Embedding] | EmbeddingsFile:
        """Each photo's main-face embedding: streamed as each finishes (``Each`` of ``Embedding``), or with ``out``
        written to a ``.npy`` file with a JSON sidecar (``EmbeddingsFile``)."""
        from idsvc.jobs import embedding

        if out is not None:
            return embedding.save(self.home, images, out, aligned=aligned, progress=progress)
        return embedding.embed(self.home, images, aligned=aligned)

    def search(self, images: Sequence[ImageInput], *, top_k: int = 5, threshold: float | None = None,
               all_faces: bool = False, aligned: bool = False) -> Each[SearchAnswer]:
        """Who is each photo? ``Each`` of ``SearchItem`` as each chunk finishes (``.one()`` for a single photo)."""
        return search.search(self.home, images, top_k=top_k, threshold=threshold, all_faces=all_faces,
                             aligned=aligned)

    def verify(self, pairs: Sequence[Pair] | Path, *, threshold: float | None = None,
               aligned: bool = False) -> Each[VerifyAnswer]:
        """Are the two photos of each pair the same person? ``Each`` of ``VerifyItem``; ``pairs`` may be a file."""
        return verify.verify(self.home, pairs, threshold=threshold, aligned=aligned)

    def verify_identity(self, image: ImageInput, name: str, *, threshold: float | None = None,
                        aligned: bool = False) -> VerifyIdentityResult:
        """Is this photo's main face the enrolled identity ``name``?"""
        return verify.verify_identity(self.home, image, name, threshold=threshold, aligned=aligned)

    # -- identities -----------------------------------------------------------------------------------------------
    def list_identities(self) -> IdentityList:
        return identities.list_identities(self.home)

    def show_identity(self, name: str, *, server_paths: bool = True) -> IdentityDetail:
        return identities.show_identity(self.home, name, server_paths=server_paths)

    def rename_identity(self, old: str, new: str) -> Identity:
        return identities.rename_identity(self.home, old, new)

    def delete_identity(self, name: str) -> DeletedIdentity:
        return identities.delete_identity(self.home, name)

    def delete_template(self, template_id: int) -> DeletedTemplate:
        return identities.delete_template(self.home, template_id)

    def template_crop(self, template_id: int) -> bytes:
        """A template's stored crop, PNG bytes (the console shows it to a signed-in session)."""
        return identities.template_crop(self.home, template_id)

    # -- archives and copies --------------------------------------------------------------------------------------
    def export(self, out: Path) -> Exported:
        from idsvc.jobs.archive import export_home

        return export_home(self.home, out)

    def import_archive(self, src: Path, *, reembed: bool = False) -> Imported:
        from idsvc.jobs.archive import import_archive

        return import_archive(self.home, src, reembed=reembed)

    def copy_home(self, to_db: str, to_vectors: str, *, to_home: Path | None = None, batch: int = 200,
                  progress: Progress | None = None) -> HomeCopied:
        """Copy this home to other backends (``idsvc migrate``); resumable, the source untouched."""
        from idsvc.jobs.home_copy import copy_to

        return copy_to(self.home, to_db, to_vectors, to_home=to_home, batch=batch, progress=progress)

    # -- thresholds, calibration, evaluation ----------------------------------------------------------------------
    def thresholds(self) -> ThresholdList:
        return ThresholdList(thresholds=self.home.registry.thresholds())

    def calibrate(self, request: CalibrationRequest, progress: Progress | None = None) -> Calibration:
        from idsvc.jobs.calibration import run_calibration

        return run_calibration(self.home, request, progress)

    def calibration_plots(self) -> list[str]:
        """The plot names of the active model's latest saved calibration report (``calibrate --report``)."""
        from idsvc.jobs.calibration import report_plots

        return list(report_plots(self.home))

    def calibration_plot(self, name: str) -> bytes:
        """One plot of that report, by its name. Raises ``file_not_found``."""
        from idsvc.jobs.calibration import report_plots

        plot = report_plots(self.home).get(name)
        if plot is None:
            raise IdsvcError("file_not_found", f"no calibration plot {name!r} for the active model")
        return plot.read_bytes()

    def evaluate(self, images: Path, pairs: Path, *, progress: Progress | None = None, plot: Path | None = None,
                 write_card: bool = False) -> Evaluation:
        from idsvc.jobs.evaluation import evaluate_pairs_file

        return evaluate_pairs_file(self.home, images, pairs, progress=progress, plot=plot, write_card=write_card)

    # -- models ---------------------------------------------------------------------------------------------------
    def model_card(self) -> ModelInfo:
        """The active model's card, as loaded (cheap: no checkpoint is read again)."""
        return ModelInfo(path=str(self.home.model.path), active=True, card=dict(self.home.model.card))

    def model_info(self, path: Path | None = None) -> ModelInfo:
        from idsvc.jobs.models import model_info

        return model_info(self.home, path)

    def import_facenet_keras(self, h5: Path, out: Path, *, name: str, fp16: bool) -> ModelWritten:
        from idsvc.jobs.models import import_facenet_keras

        return import_facenet_keras(h5, out, name=name, fp16=fp16)

    def import_sface(self, onnx_path: Path | None, out: Path, *, name: str) -> ModelWritten:
        from idsvc.jobs.models import import_sface

        return import_sface(onnx_path, out, name=name)

    def fuse_models(self, paths: list[Path], weights: list[float], out: Path, *, name: str,
                    link: bool = False) -> ModelWritten:
        from idsvc.jobs.models import fuse

        return fuse(paths, weights, out, name=name, link=link)

    def train(self, config: TrainConfig, event: Callable[[dict[str, Any]], None] | None = None) -> ModelWritten:
        from idsvc.training import train

        return ModelWritten(path=str(config.out), card=train(config, self.settings, event))

    # -- API keys -------------------------------------------------------------------------------------------------
    def create_key(self, name: str, scope: str) -> NewKey:
        return keys.create_key(self.home.registry, name, scope)

    def list_keys(self) -> KeyList:
        return keys.list_keys(self.home.registry)

    def revoke_key(self, name: str) -> RevokedKey:
        return keys.revoke_key(self.home.registry, name)

    def authenticate(self, secret: str | None, needed: str) -> Caller:
        return keys.authenticate(self.home.registry, secret, needed)

    # -- operations -----------------------------------------------------------------------------------------------
    def migrate(self, revision: str = "head", *, down: bool = False) -> SchemaRevision:
        """Alembic up or down, without the automatic upgrade that opening the registry does."""
        from idsvc.jobs.schema import migrate_schema

        return migrate_schema(self.settings, revision, down=down)

    def status(self, *, server_paths: bool = True) -> Status:
        return status.status(self.home, server_paths=server_paths)

    def readiness(self) -> Ready:
        return status.readiness(self.home)

    def reindex(self, *, kind: str | None = None, model: Path | None = None,
                progress: Progress | None = None) -> Reindexed:
        return upgrade.reindex(self.home, kind=kind, model=model, progress=progress)

    def doctor(self, *, fix: bool = False) -> DoctorReport:
        return doctor.doctor(self.home, fix=fix)
