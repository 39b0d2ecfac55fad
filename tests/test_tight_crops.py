"""Faces that fill the frame — tight aligned crops, ID-style cuts, greyscale — on real photos: found (with the
bordered retry), prepared as each encoder's own pipeline would (an ArcFace-style crop taken whole, without a black
margin; a cut tighter than the template aligned with one), and matched against ordinary photos of the same person."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from idsvc.faces.align import align, outside_fraction
from idsvc.faces.images import load_image
from idsvc.landmarks import ARCFACE_112
from tests.conftest import LFW, SAMPLES, search_one, verify_one

REPO_SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def rgb(path: Path) -> np.ndarray:
    return load_image(path, max_pixels=10**8, min_side=8).pixels


def arcface_crop(shared_pipeline, path: Path, tmp_path: Path, grey: bool = False) -> Path:
    """An ArcFace-style 112×112 aligned crop cut from a real LFW photo, as other face systems export them."""
    img = rgb(path)
    crop = align(img, shared_pipeline.detector.detect(img)[0].landmarks, 112, base=ARCFACE_112).crop
    out = tmp_path / (path.stem + ("-grey" if grey else "") + ".png")
    cv2.imwrite(str(out), cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if grey else cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return out


def test_a_face_filling_the_frame_is_found_after_adding_a_border(shared_pipeline):
    img = rgb(sorted((LFW / "Colin_Powell").glob("*.jpg"))[0])
    x1, y1, x2, y2 = (int(v) for v in shared_pipeline.detector.detect(img)[0].box)
    w, h = x2 - x1, y2 - y1
    cut = np.ascontiguousarray(img[int(y1 + 0.1 * h):int(y2 - 0.05 * h), int(x1 + 0.1 * w):int(x2 - 0.1 * w)])
    assert shared_pipeline.detector._detect([cut]) == [[]]  # plain MTCNN misses it
    faces = shared_pipeline.detector.detect(cut)
    assert faces and faces[0].padded
    lm = faces[0].landmarks  # mapped back into the cut's own coordinates
    assert (lm[:, 0] > 0).all() and (lm[:, 0] < cut.shape[1]).all() and (lm[:, 1] > 0).all()


def test_outside_fraction_tells_a_tight_crop_from_a_photo(shared_pipeline, tmp_path):
    photo = rgb(sorted((LFW / "Colin_Powell").glob("*.jpg"))[0])
    tight = rgb(arcface_crop(shared_pipeline, sorted((LFW / "Colin_Powell").glob("*.jpg"))[0], tmp_path))
    f_photo = outside_fraction(photo.shape, shared_pipeline.detector.detect(photo)[0].landmarks, 160)
    f_tight = outside_fraction(tight.shape, shared_pipeline.detector.detect(tight)[0].landmarks, 160)
    assert f_photo < 0.02 and f_tight > 0.15


@pytest.mark.parametrize("grey", [False, True])
def test_tight_crop_verifies_against_a_loose_photo(service, make_service, settings, tmp_path, grey):
    from idsvc.settings import load_settings

    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    crop = arcface_crop(service.home.model.pipeline, colin[0], tmp_path, grey=grey)
    r = verify_one(service, crop, colin[3])
    assert r.same, r
    fc = service.home.model.pipeline.one_face(load_image(crop, max_pixels=10**8, min_side=8), strict=False)
    assert fc.quality.preparation == "tight" and fc.quality.outside > settings.tight_crop_outside
    # An ArcFace-style crop frames the face at the template's scale: taken whole, with no black margin where the face
    # reaches the border (the first release filled the template's margin black).
    black = make_service(load_settings(home=tmp_path / "black", device="cpu", tight_crop_mode="black"))
    fb = black.home.model.pipeline.one_face(load_image(crop, max_pixels=10**8, min_side=8), strict=False)

    def black_fraction(c: np.ndarray) -> float:
        return float((c.max(axis=2) < 8).mean())

    assert black_fraction(fc.aligned.crop) < 0.01 < 0.05 < black_fraction(fb.aligned.crop)


def test_given_aligned_crops_enroll_and_loose_photos_find_them(service):
    crops = sorted((REPO_SAMPLES / "aligned" / "angelina_jolie").glob("*"))
    r = service.enroll("angelina", [str(p) for p in crops], aligned=True)
    assert r.accepted and all(a.quality.preparation == "given_aligned" for a in r.accepted)
    found = search_one(service, SAMPLES / "test_images" / "angelina_jolie" / "1.jpg")
    assert found.identity == "angelina"
    probe = search_one(service, crops[0], aligned=True)
    assert probe.faces[0].quality.preparation == "given_aligned" and probe.identity == "angelina"


def test_a_photo_without_a_detectable_face_is_evaluated_whole(shared_pipeline, tmp_path):
    """Evaluation must score every pair: where even the bordered retry finds no face, the whole photo is taken as
    the face crop, with ArcFace's layout assumed for the landmarks (what most exported crops use)."""
    from idsvc.faces.align import whole_image_crop
    from idsvc.landmarks import template

    img = rgb(sorted((LFW / "Colin_Powell").glob("*.jpg"))[0])
    patch = np.ascontiguousarray(img[:70, :70])  # background from the photo's corner: no face in it
    cv2.imwrite(str(tmp_path / "patch.png"), cv2.cvtColor(patch, cv2.COLOR_RGB2BGR))
    crops, found, marks = shared_pipeline.eval_crops([tmp_path / "patch.png"])
    assert not found[0]
    assert np.array_equal(crops[0], whole_image_crop(patch, 160))
    assert np.allclose(marks[0], template(160, ARCFACE_112), atol=1e-3)


def test_a_cut_tighter_than_the_template_is_aligned_with_a_black_margin(shared_pipeline, tmp_path):
    """Taken whole, a cut from the eyebrows to the chin would show the encoders a face a third larger than they were
    trained on; each member's own pipeline pads it black and aligns, and so does idsvc — on the zoomed template
    FaceNet's pipeline frames such faces by, which SFace recognises from the crop's points (and warps by all five).
    A loose photo of the same person stays on the ordinary template, which SFace warps by the robust fit."""
    from idsvc.encoders.sface import tight_crop
    from idsvc.faces.reader import WHOLE_MAX_SCALE, whole_scale
    from idsvc.landmarks import TEMPLATE_160, TIGHT_TEMPLATE_160
    from idsvc.measurement.degrade import tight_cut

    img = rgb(sorted((LFW / "Colin_Powell").glob("*.jpg"))[0])
    cut, _ = tight_cut(img, shared_pipeline.detector.detect(img)[0].landmarks, np.random.default_rng(0), (112, 112))
    fc = shared_pipeline.one_face(load_image(_png(cut, tmp_path / "cut.png"), max_pixels=10**8, min_side=8),
                                  strict=False)
    assert fc.quality.preparation == "tight" and whole_scale(cut.shape, fc.face.landmarks) > WHOLE_MAX_SCALE
    assert (fc.aligned.crop.max(axis=2) < 8).mean() > 0.01
    eyes = float(TIGHT_TEMPLATE_160[1, 0] - TIGHT_TEMPLATE_160[0, 0])
    assert np.abs(fc.aligned.landmarks - TIGHT_TEMPLATE_160).max() < 0.15 * eyes
    assert tight_crop(fc.aligned.landmarks, 160)
    loose = shared_pipeline.one_face(load_image(_png(img, tmp_path / "loose.png"), max_pixels=10**8, min_side=8))
    assert loose.quality.preparation == "aligned" and not tight_crop(loose.aligned.landmarks, 160)
    assert np.abs(loose.aligned.landmarks - TEMPLATE_160).max() < 0.15 * eyes


def _png(pixels: np.ndarray, path: Path) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    return path
