"""``idsvc detect``: every face in each photo — box, five landmarks, detection probability, quality and the quality
gate's reasons — without the encoder (CompreFace's detection endpoint, face_recognition's ``face_locations``,
deepface's ``extract_faces``), optionally writing each aligned crop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, gather, source_name
from idsvc.faces.reader import FaceReader
from idsvc.results import DetectedFace, DetectedPhoto, DetectResult, ItemError


def detect(reader: FaceReader, images: Sequence[ImageInput], crops_dir: Path | None = None,
           progress: Callable[..., None] | None = None) -> DetectResult:
    """One entry per photo (a path, or an upload's bytes and name): its faces (best first), or the error that
    stopped it (a bad file does not stop the others). Crops go to ``crops_dir/<photo stem>-<n>.png`` (n from 1,
    best face first). Raises ``file_not_found`` for a missing path, before anything is read."""
    from idsvc.faces.align import save_crop

    files = gather(images)
    if crops_dir is not None:
        try:
            crops_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IdsvcError("invalid_argument", f"cannot create {crops_dir}: {exc.strerror}") from None
    photos: list[DetectedPhoto] = []
    for f in files:
        try:
            image = reader.read(f)
            faces = []
            for n, fc in enumerate(reader.faces(image), 1):
                crop = None
                if crops_dir is not None:
                    crop = str(crops_dir / f"{Path(source_name(f)).stem}-{n}.png")
                    save_crop(crop, fc.aligned.crop)
                faces.append(DetectedFace(
                    box=[round(v, 1) for v in fc.face.box], det_prob=round(fc.face.prob, 4),
                    landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in fc.face.landmarks],
                    quality=fc.quality.report(), quality_problems=reader.quality_reasons(fc),
                    **({"crop": crop} if crop is not None else {})))
            photos.append(DetectedPhoto(path=source_name(f), faces=faces))
        except IdsvcError as exc:
            photos.append(DetectedPhoto(path=source_name(f), error=ItemError.of(exc)))
        if progress:
            progress(1)
    return DetectResult(photos=photos, faces=sum(len(p.faces or []) for p in photos),
                        errors=sum(1 for p in photos if p.error is not None))
