"""``idsvc detect``: every face in each photo — box, five landmarks, detection probability, quality and the quality
gate's reasons — without the encoder (CompreFace's detection endpoint, face_recognition's ``face_locations``,
deepface's ``extract_faces``), optionally writing each aligned crop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, source_name
from idsvc.home.pipeline import Pipeline


def detect_photos(pipeline: Pipeline, files: Sequence[ImageInput], crops_dir: Path | None = None,
                  progress: Callable[..., None] | None = None) -> dict[str, Any]:
    """One entry per photo (a path, or an upload's bytes and name): its faces (best first), or the error that
    stopped it (a bad file does not stop the others). Crops go to ``crops_dir/<photo stem>-<n>.png`` (n from 1,
    best face first)."""
    from idsvc.faces.align import save_crop

    if crops_dir is not None:
        try:
            crops_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IdsvcError("invalid_argument", f"cannot create {crops_dir}: {exc.strerror}") from None
    photos: list[dict[str, Any]] = []
    for f in files:
        try:
            image = pipeline.read(f)
            faces = []
            for n, fc in enumerate(pipeline.faces(image), 1):
                entry = {"box": [round(v, 1) for v in fc.face.box], "det_prob": round(fc.face.prob, 4),
                         "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in fc.face.landmarks],
                         "quality": fc.quality.as_dict(), "quality_problems": pipeline.quality_reasons(fc)}
                if crops_dir is not None:
                    crop_path = str(crops_dir / f"{Path(source_name(f)).stem}-{n}.png")
                    save_crop(crop_path, fc.aligned.crop)
                    entry["crop"] = crop_path
                faces.append(entry)
            photos.append({"path": source_name(f), "faces": faces})
        except IdsvcError as exc:
            photos.append({"path": source_name(f), "error": {"code": exc.code, "message": exc.message}})
        if progress:
            progress(1)
    return {"photos": photos, "faces": sum(len(p.get("faces", [])) for p in photos),
            "errors": sum(1 for p in photos if "error" in p)}
