"""``idsvc calibrate``: measure thresholds for the home's *active* model on a pairs file or a folder of identities,
and optionally store the chosen one for that model version. The statistics live in ``idsvc.measurement`` (``far``,
``open_set``); the report in ``idsvc.measurement.report``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.checksums import file_sha256
from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.jobs.evaluation import embed_photos
from idsvc.measurement.far import DEFAULT_CONFIDENCE, choose, verification_calibration
from idsvc.measurement.impostor_tail import impostor_scores, measure_tail
from idsvc.measurement.open_set import open_set
from idsvc.measurement.pairs import PairSet, data_hash, folder_pairs, read_pairs
from idsvc.measurement.verification import rates
from idsvc.results import Calibration
from idsvc.storage.embedding_cache import EmbeddingCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationRequest:
    data: Path                       # a pairs file (with ``images``) or a folder of identity folders
    images: Path | None = None
    mode: str = "far"                # "far": threshold at target_far; "accuracy": best accuracy
    target_far: float = 1e-3
    save: bool = False
    report_dir: Path | None = None
    max_pairs: int = 3000
    seed: int = 0
    confidence: float = DEFAULT_CONFIDENCE

    def check(self) -> None:
        """Raises ``invalid_argument`` naming the option at fault."""
        if self.mode not in ("far", "accuracy"):
            raise IdsvcError("invalid_argument", f"--mode must be far or accuracy, not {self.mode!r}")
        if not 0 < self.target_far < 1:
            raise IdsvcError("invalid_argument", f"--target-far must be between 0 and 1, not {self.target_far}")
        if not 0 < self.confidence < 1:
            raise IdsvcError("invalid_argument", f"--confidence must be between 0 and 1, not {self.confidence}")
        if self.max_pairs < 1:
            raise IdsvcError("invalid_argument", f"--max-pairs must be at least 1, not {self.max_pairs}")
        if self.report_dir is not None and self.report_dir.exists() and not self.report_dir.is_dir():
            raise IdsvcError("invalid_argument", f"--report {self.report_dir}: exists and is not a folder")


def pair_set(req: CalibrationRequest) -> PairSet:
    if req.data.is_file():
        if req.images is None:
            raise IdsvcError("invalid_argument", "a pairs file needs --images ROOT")
        return PairSet(read_pairs(req.data, req.images), "pairs_file", {})
    if req.data.is_dir():
        from idsvc.faces.images import people_folders

        return folder_pairs(people_folders(req.data), req.data, max_pairs=req.max_pairs, seed=req.seed)
    raise IdsvcError("file_not_found", f"{req.data}: no such file or folder", path=str(req.data))


def tail_of(emb: dict[Path, np.ndarray], pairset: PairSet, scores: np.ndarray, labels: np.ndarray,
            data: str) -> dict[str, Any]:
    """The impostor tail searches will size their thresholds by: for a folder, every pair of photos of different
    people (a folder of 50 people × 10 photos gives 122,500); for a pairs file, its impostor pairs. Raises
    ``not_enough_data`` where they cannot reach FAR 1e-2."""
    if not pairset.identities:
        return measure_tail(scores[~labels], source=data, identities=0, photos=len(emb))
    files = [(i, f) for i, fs in enumerate(pairset.identities.values()) for f in fs]
    vecs = np.stack([emb[f] for _, f in files])
    scores_all = impostor_scores(vecs, np.array([i for i, _ in files]))
    return measure_tail(scores_all, source=data, identities=len(pairset.identities), photos=len(vecs))


def run_calibration(home: Home, req: CalibrationRequest,
                    progress: Callable[..., None] | None = None) -> Calibration:
    """ROC, EER, best accuracy and FAR thresholds (chosen on nine folds, measured on the tenth), open-set rates for
    folders; the chosen threshold is stored for the active model version with ``save``. The figures come from
    ``idsvc.measurement`` as plain numbers and are checked into their shape (``Calibration``) here."""
    req.check()
    pairset = pair_set(req)
    labels = np.array([p.same for p in pairset.pairs], dtype=bool)
    if labels.all() or not labels.any():
        raise IdsvcError("not_enough_data", f"{req.data}: calibration needs both genuine and impostor pairs "
                         f"({int(labels.sum())} genuine, {int((~labels).sum())} impostor)")
    photos = sorted({p for pair in pairset.pairs for p in (pair.a, pair.b)}
                    | {f for files in pairset.identities.values() for f in files})
    missing = [p for p in photos if not p.is_file()]
    if missing:
        raise IdsvcError("file_not_found", f"{missing[0]}: no such file ({len(missing)} missing)",
                         path=str(missing[0]))
    model = home.model
    if progress:
        progress(0, total=len(photos))
    sha_of = {p: file_sha256(p) for p in photos}
    cache = EmbeddingCache(home.settings.cache_dir, model.version, model.pipeline.recipe)
    vectors, no_face = embed_photos(model.pipeline, photos, cache, progress, shas=[sha_of[p] for p in photos])
    emb = dict(zip(photos, vectors))
    pairs = pairset.pairs
    scores = np.array([float(emb[p.a] @ emb[p.b]) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    measured = verification_calibration(scores, labels, folds, req.confidence)
    threshold, point = choose(measured, scores, labels, req.mode, req.target_far, req.confidence)
    tar, far = rates(scores, labels, threshold)
    result: dict[str, Any] = {
        "model_version": model.version, "model_path": str(model.path), "data": str(req.data),
        "source": pairset.source, "data_sha256": data_hash(pairs, sha_of), "images": len(photos),
        "no_face": no_face, **measured, "threshold": threshold, "operating_point": {**point, "tar": tar, "far": far},
    }
    if pairset.identities:
        thr_list = sorted({threshold, measured["accuracy_threshold"]}
                          | {r["threshold"] for r in measured["far_thresholds"] if r.get("supported")})
        result["open_set"] = open_set(emb, pairset.identities, thr_list, seed=req.seed)
    try:
        result["impostor_tail"] = tail_of(emb, pairset, scores, labels, str(req.data))
    except IdsvcError as exc:
        result["impostor_tail_note"] = exc.message
    if req.save:
        details = {"data": str(req.data), "tar": tar, "far": far, "auc": measured["auc"], "eer": measured["eer"]}
        if result.get("impostor_tail"):
            details["impostor_tail"] = result["impostor_tail"]
        saved = home.registry.save_threshold(
            model.version, threshold, point["mode"], point["target_far"], result["data_sha256"],
            measured["genuine"], measured["impostor"], details)
        result["saved"] = saved.document()
        log.info("stored threshold %.4f for %s", threshold, model.version)
    if req.report_dir is not None:
        from idsvc.measurement.report import write_calibration_report

        result["report"] = write_calibration_report(req.report_dir, result, pairs, scores, labels,
                                                    lambda paths: model.pipeline.eval_crops(paths)[0])
        home.registry.set_meta(REPORT_KEY + model.version, str(req.report_dir.resolve()))  # the console shows it
    return Calibration.model_validate(result)


REPORT_KEY = "calibration_report:"  # + model version → the folder of its latest calibration report


def report_plots(home: Home) -> dict[str, Path]:
    """The plots (``name.png`` → file) of the active model's latest calibration report, if one was saved and is
    still there; names are the report's own file names, never a path a client gives."""
    folder = home.registry.get_meta(REPORT_KEY + home.model.version)
    if not folder or not Path(folder).is_dir():
        return {}
    return {p.name: p for p in sorted(Path(folder).glob("*.png")) if p.is_file()}
