"""Image → faces → aligned crops: the one path every workflow (enroll, search, eval, train) reads faces by, so that
training, evaluation and serving see identically prepared faces. No encoder here: ``idsvc.home.pipeline`` adds the
embedding step for a home's active model; ``detect`` uses this alone."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from idsvc.cancel import checkpoint
from idsvc.errors import IdsvcError
from idsvc.faces.align import Aligned, align, outside_fraction, whole_image_crop
from idsvc.faces.detect import Detector
from idsvc.faces.face import Face, center_weighted_score, iou
from idsvc.faces.images import ImageInput, LoadedImage, decode_image, load_image
from idsvc.faces.points import apart, doubts
from idsvc.faces.quality import Quality, measure_quality, quality_problems
from idsvc.faces.yunet import YuNet
from idsvc.landmarks import ARCFACE_112, TEMPLATE_160, TIGHT_TEMPLATE_160, template
from idsvc.settings import Settings

#: A face that fills the frame is taken whole only when its box spans at least this fraction of the photo's short side.
TIGHT_FACE_SPAN = 0.5
#: A tight photo is taken whole (``auto``) only where that shows the face at most this much larger than the template:
#: ArcFace-style 112-px crops come to 0.78–1.05 (1st–99th percentile, CelebA arcface-112), cuts from the eyebrows to
#: the chin to 0.99–1.79 (median 1.38).
WHOLE_MAX_SCALE = 1.1
#: YuNet's face is MTCNN's when their boxes overlap at least this much (intersection over union).
SAME_FACE = 0.3
#: MTCNN's refined points replace YuNet's only where they lie at most this far from them (mean, in eye distances):
#: further, the refinement has found something else (on CelebA tight cuts they lie a median 0.05 apart).
REFINED_AGREES = 0.35
#: A second face at least this fraction of the chosen face's size (and confidently detected) makes a photo ambiguous.
COMPETING_FACE_RATIO = 0.5


def whole_scale(shape: tuple[int, ...], landmarks: np.ndarray) -> float:
    """How much larger than on idsvc's template the eyes lie apart once the whole photo (squared up) is the crop."""
    eyes = float(np.hypot(*(landmarks[1] - landmarks[0])))
    return eyes / max(shape[:2]) / float(TEMPLATE_160[1, 0] - TEMPLATE_160[0, 0]) * 160.0


def undetected_face(shape: tuple[int, ...]) -> Face:
    """A stand-in for the face of a photo in which none was found, taken as a face crop: the box is the photo and
    the landmarks sit where ArcFace's 112-px layout — the framing most exported face crops use — puts them in the
    photo squared up (so an encoder with its own template re-aligns it sensibly)."""
    h, w = shape[:2]
    side = max(h, w)
    marks = template(side, ARCFACE_112) - np.array([(side - w) / 2, (side - h) / 2], np.float32)
    return Face(box=(0.0, 0.0, float(w), float(h)), prob=0.0, landmarks=marks.astype(np.float32))


@dataclass(frozen=True)
class FaceCrop:
    face: Face
    aligned: Aligned
    quality: Quality
    faces_in_image: int = 1


class FaceReader:
    """Detector + aligner, preparing crops at ``crop_size`` (the encoder's input size; idsvc's 160-px template by
    default). Created once per process: MTCNN loads slowly."""

    def __init__(self, settings: Settings, detector: Detector | None = None, *, crop_size: int = 160,
                 device: Any = None) -> None:
        self.settings = settings
        self.detector = detector or Detector(settings, device)
        self.crop_size = crop_size
        self.second = YuNet()  # loaded on first use: an ordinary photo never needs it

    def find(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Every face of each photo, best first: MTCNN's (same-shape photos share its passes; a photo with none is
        tried again with a border), else YuNet's."""
        found = self.detector.detect_batch(images)
        return [faces or self.second.detect(rgb) for rgb, faces in zip(images, found)]

    def load(self, path: str | Path) -> LoadedImage:
        checkpoint()  # one photo is the unit of work a timed-out request stops after (idsvc.cancel)
        s = self.settings
        return load_image(path, max_pixels=s.max_image_pixels, min_side=s.min_image_side)

    def decode(self, data: bytes, source: str) -> LoadedImage:
        checkpoint()
        s = self.settings
        return decode_image(data, source, max_pixels=s.max_image_pixels, min_side=s.min_image_side)

    def read(self, image: ImageInput) -> LoadedImage:
        """A path is loaded, an upload (bytes, name) decoded: the CLI and the API read photos alike."""
        return self.decode(*image) if isinstance(image, tuple) else self.load(image)

    def settle(self, pixels: np.ndarray, face: Face) -> Face:
        """The face with five points good enough to align by.

        An ordinary photo keeps MTCNN's points. A face that fills the frame (more than ``tight_crop_outside`` of its
        template crop outside the photo) is found again by YuNet on a bordered copy — on cuts tighter than the
        template MTCNN's points are off by half an eye distance (median, CelebA tight-112 and tight-168x192) and
        MTCNN may even report a box three times the photo — and its points are then refined by MTCNN's last stage
        on the box YuNet's points give (``Detector.refine``: a tenth of an eye distance off, against a fifth for
        YuNet's own). So is a face whose MTCNN points do not look like a face's (``points.doubts``), where YuNet
        finds the same face (boxes overlapping). Where YuNet finds nothing plausible, a tight face is detected again
        by MTCNN on a bordered copy."""
        tight = face.padded or outside_fraction(pixels.shape, face.landmarks, self.crop_size) > \
            self.settings.tight_crop_outside
        if not tight and not doubts(face.landmarks, pixels.shape):
            return face
        found = [f for f in self.second.detect(pixels) if not doubts(f.landmarks, pixels.shape)]
        if tight:  # the face fills the frame: there is one, YuNet's main face
            second = max(found, key=lambda f: center_weighted_score(f, pixels.shape), default=None)
        else:
            second = max(found, key=lambda f: iou(f.box, face.box), default=None)
            second = second if second is not None and iou(second.box, face.box) >= SAME_FACE else None
        if second is None:
            return self.detector.redetect_bordered(pixels, face) if tight and face.points == "mtcnn" else face
        refined, _ = self.detector.refine(pixels, second.landmarks)
        if not doubts(refined, pixels.shape) and apart(refined, second.landmarks) <= REFINED_AGREES:
            second = replace(second, landmarks=refined, points="refined")
        return replace(second, prob=max(face.prob, second.prob)) if tight else \
            replace(face, landmarks=second.landmarks, points=second.points)

    def prepare(self, pixels: np.ndarray, face: Face) -> tuple[Aligned, float, str]:
        """(aligned crop, fraction outside the photo, preparation) for one face.

        An ordinary photo is aligned onto the template with black outside (there is hardly any outside). A face that
        fills the frame (more than ``tight_crop_outside`` of the crop outside the photo: ``tight``) is prepared by
        ``tight_crop_mode``. ``auto`` (the default) gives each member the framing its own pipeline gives such a
        face: the photo itself where it frames the face at the template's scale (an ArcFace-style crop: the eyes
        at most ``WHOLE_MAX_SCALE`` times as far apart as on the template once the photo is the crop), since its
        real pixels then stand where a template crop would have black; else the template with a black margin (a
        cut tighter than the template, which taken whole would show the encoders a face a third larger than they
        were trained on), as SFace's pipeline (YuNet and ``alignCrop`` on a copy padded black) and FaceNet's (MTCNN
        on the padded copy) do, on a template zoomed 1.2× (``TIGHT_TEMPLATE_160``): FaceNet's own pipeline frames
        such a face larger than an ordinary one, and FaceNet scores it best that way; SFace re-aligns from the
        crop's points, and the zoomed crop still holds all of a cut from the eyebrows to the chin. With the points
        settled (``settle``) this scored best on the CelebA proxies (bench/accuracy.py, docs/accuracy.md).
        ``black`` always aligns on the ordinary template; ``whole`` always takes the photo (when the
        face spans at least ``TIGHT_FACE_SPAN`` of its short side, so a face cut off at the edge of a large photo
        never brings the rest of the photo along; others get ``replicate``); ``reflect``/``replicate`` fill the
        margin from the face's own border.
        """
        s = self.settings
        outside = outside_fraction(pixels.shape, face.landmarks, self.crop_size)
        if outside <= s.tight_crop_outside:
            return align(pixels, face.landmarks, self.crop_size), outside, "aligned"
        spans = face.size >= TIGHT_FACE_SPAN * min(pixels.shape[:2])
        if s.tight_crop_mode == "auto":
            if spans and whole_scale(pixels.shape, face.landmarks) <= WHOLE_MAX_SCALE:
                return self._whole(pixels, face), outside, "tight"
            return align(pixels, face.landmarks, self.crop_size, base=TIGHT_TEMPLATE_160), outside, "tight"
        if s.tight_crop_mode == "black":
            return align(pixels, face.landmarks, self.crop_size), outside, "tight"
        if s.tight_crop_mode == "whole" and spans:
            return self._whole(pixels, face), outside, "tight"
        border = "replicate" if s.tight_crop_mode == "whole" else s.tight_crop_mode
        return align(pixels, face.landmarks, self.crop_size, border=border), outside, "tight"

    def _whole(self, pixels: np.ndarray, face: Face) -> Aligned:
        """The photo itself as the crop (squared up, resized), with the face's landmarks moved into it."""
        crop = whole_image_crop(pixels, self.crop_size)
        h, w = pixels.shape[:2]
        side = max(h, w)
        moved = (face.landmarks + np.array([(side - w) / 2, (side - h) / 2], np.float32)) * (self.crop_size / side)
        return Aligned(crop=crop, landmarks=moved.astype(np.float32))

    def crop(self, image: LoadedImage, face: Face) -> FaceCrop:
        face = self.settle(image.pixels, face)
        aligned, outside, how = self.prepare(image.pixels, face)
        return FaceCrop(face=face, aligned=aligned,
                        quality=measure_quality(face, aligned, outside=outside, preparation=how,
                                                photo_format=image.format))

    def given_aligned(self, image: LoadedImage, faces: list[Face] | None = None) -> FaceCrop:
        """A photo the caller says is already an aligned face crop (``--aligned``): the whole photo goes to the
        encoder. Detection still runs (unless ``faces`` were found already), for the quality report; where it finds
        nothing, the face is the photo."""
        faces = self.find([image.pixels])[0] if faces is None else faces
        face = self.settle(image.pixels, faces[0]) if faces else undetected_face(image.pixels.shape)
        aligned = self._whole(image.pixels, face)
        return FaceCrop(face=face, aligned=aligned, faces_in_image=len(faces),
                        quality=measure_quality(face, aligned, outside=0.0, preparation="given_aligned",
                                                photo_format=image.format))

    def faces(self, image: LoadedImage) -> list[FaceCrop]:
        """Every face in the image, best (large and central) first."""
        return [self.crop(image, f) for f in self.find([image.pixels])[0]]

    def quality_reasons(self, fc: FaceCrop) -> list[str]:
        s = self.settings
        return quality_problems(fc.quality, min_face_px=s.quality_min_face_px, min_det_prob=s.quality_min_det_prob,
                                min_sharpness=s.quality_min_sharpness, max_yaw=s.quality_max_yaw)

    def one_face(self, image: LoadedImage, *, strict: bool = True, given_aligned: bool = False) -> FaceCrop:
        """The face a photo is about: the large-and-central one.

        ``strict`` (enrollment) also refuses a photo with a rival face of similar size and one failing the quality
        gate, since a template must be unambiguous; probes (search, verify) just take the main face.
        With ``given_aligned`` the photo is taken as the aligned face itself (see ``given_aligned``).
        Raises ``no_face``, and when strict ``multiple_faces`` or ``low_quality``.
        """
        return self._choose(image, self.find([image.pixels])[0], strict=strict, given_aligned=given_aligned)

    def one_faces(self, images: list[LoadedImage], *, strict: bool = True,
                  given_aligned: bool = False) -> list[FaceCrop | Exception]:
        """``one_face`` for several photos at once — same-shape photos share MTCNN passes — each photo's crop or the
        error ``one_face`` would have raised for it (the batch goes on)."""
        detected = self.find([im.pixels for im in images])
        out: list[FaceCrop | Exception] = []
        for image, faces in zip(images, detected):
            try:
                out.append(self._choose(image, faces, strict=strict, given_aligned=given_aligned))
            except Exception as exc:  # noqa: BLE001 - handed back as that photo's result
                out.append(exc)
        return out

    def _choose(self, image: LoadedImage, faces: list[Face], *, strict: bool, given_aligned: bool) -> FaceCrop:
        if given_aligned:
            fc = self.given_aligned(image, faces)
            if strict:
                self._gate(image, fc)
            return fc
        if not faces:
            raise IdsvcError("no_face", f"{image.source}: no face found (if the photo is itself a face crop, say so: "
                             "--aligned, or aligned=true over HTTP)", path=image.source)
        best = faces[0]
        rivals = [f for f in faces[1:]
                  if f.prob >= self.settings.quality_min_det_prob and f.size >= COMPETING_FACE_RATIO * best.size]
        if rivals and strict:
            raise IdsvcError("multiple_faces", f"{image.source}: {len(rivals) + 1} faces found, expected one",
                             path=image.source, faces=len(rivals) + 1)
        fc = self.crop(image, best)
        fc = FaceCrop(fc.face, fc.aligned, fc.quality, faces_in_image=len(faces))
        if strict:
            self._gate(image, fc)
        return fc

    def _gate(self, image: LoadedImage, fc: FaceCrop) -> None:
        reasons = self.quality_reasons(fc)
        if reasons:
            raise IdsvcError("low_quality", f"{image.source}: {'; '.join(reasons)}", path=image.source,
                             reasons=reasons, quality=fc.quality.as_dict())

    def eval_crops(self, paths: list[Path], batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crops for evaluation/training: the chosen face, or where none is found even with a border, the whole
        photo taken as a face crop (``undetected_face``): a photo MTCNN cannot read at all is, in practice, a tight
        crop under light it was not trained for — on the greyscale hard-light set this fallback is what lifted
        FaceNet to 98.7% — while an ordinary photo (LFW: none left after the bordered retry) seldom gets here.

        Returns ((N, S, S, 3) uint8 crops, (N,) bool found, (N, 5, 2) landmarks in the crops). Same-shape photos
        share MTCNN passes.
        """
        crops: list[Aligned] = []
        found: list[bool] = []
        for i in range(0, len(paths), batch):
            images = [self.load(p) for p in paths[i:i + batch]]
            for image, faces in zip(images, self.find([im.pixels for im in images])):
                if faces:
                    crops.append(self.prepare(image.pixels, self.settle(image.pixels, faces[0]))[0])
                else:
                    crops.append(self._whole(image.pixels, undetected_face(image.pixels.shape)))
                found.append(bool(faces))
        return (np.stack([a.crop for a in crops]), np.array(found, dtype=bool),
                np.stack([a.landmarks for a in crops]).astype(np.float32))
