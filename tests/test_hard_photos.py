"""Photos our benchmarks do not cover, made from real LFW photos: a cut from the eyebrows to the chin (the face wider
than the frame), greyscale, one point light to the side putting half the face in shadow — what an infrared door
camera or an ID scanner produces. Each member of the shipped model and the fusion must still match it to a loose
photo of the same person, and the five points idsvc finds on it must be where the face's points really are."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from idsvc.faces.images import load_image
from idsvc.measurement.degrade import grey, point_light, tight_cut
from idsvc.settings import DEFAULT_MODEL, load_settings
from tests.conftest import LFW, verify_one

#: (person, the photo cut, the loose photo compared with it, seed of the cut and the light): men and women, light
#: 25–65° from either side (the seeds are not chosen: 0, 1, 2).
CASES = [("Colin_Powell", 0, 3, 0), ("Serena_Williams", 0, 2, 1), ("Junichiro_Koizumi", 1, 4, 2)]
#: The same cut matched with a loose photo, the light up to 25° to the side (the light of the photos the issue
#: reported), for people whose two loose photos every member matches with room to spare (checked in the test):
#: how far a cut and the light take a match that exists, not whether the pair was hard to begin with.
MATCH_CASES = [("Colin_Powell", 0, 3, 1), ("Hugo_Chavez", 0, 5, 0)]  # seeds whose light shades one half (checked)
MATCH_LIGHT = (15.0, 25.0)
MEMBERS = {"default": DEFAULT_MODEL, "facenet": DEFAULT_MODEL.with_name("idsvc-facenet.pt"),
           "sface": DEFAULT_MODEL.with_name("idsvc-sface.pt")}


def rgb(path: Path) -> np.ndarray:
    return load_image(path, max_pixels=10**8, min_side=8).pixels


def hard_crop(pipeline, loose: Path, seed: int, out: Path,
              light: tuple[float, float] = (25.0, 65.0)) -> tuple[Path, np.ndarray]:
    """(the degraded 168×192 greyscale crop written as PNG, where the loose photo's five points land in it)."""
    photo = rgb(loose)
    points = pipeline.detector.detect(photo)[0].landmarks
    rng = np.random.default_rng(seed)
    cut, matrix = tight_cut(photo, points, rng, (168, 192))
    lit = point_light(grey(cut), rng, light)
    cv2.imwrite(str(out), lit)
    return out, np.c_[points, np.ones(5)] @ matrix.T


def half_in_shadow(path: Path) -> float:
    """How many times brighter the lit half of the face is than the other."""
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    left, right = g[:, : g.shape[1] // 2].mean(), g[:, g.shape[1] // 2:].mean()
    return float(max(left, right) / max(min(left, right), 1.0))


@pytest.fixture(scope="module")
def member_services(tmp_path_factory):
    """A service per shipped model: the fusion and each member alone, as `--model data/models/idsvc-<member>.pt`."""
    from idsvc.service import Service

    made = {name: Service(load_settings(home=tmp_path_factory.mktemp(name), model=path, device="cpu"))
            for name, path in MEMBERS.items()}
    yield made
    for s in made.values():
        s.close()


@pytest.mark.parametrize(("person", "cut", "loose", "seed"), MATCH_CASES)
def test_a_tight_grey_half_lit_crop_matches_a_loose_photo_with_every_member(
        member_services, shared_pipeline, tmp_path, person, cut, loose, seed):
    photos = sorted((LFW / person).glob("*.jpg"))
    crop, _ = hard_crop(shared_pipeline, photos[cut], seed, tmp_path / "crop.png", MATCH_LIGHT)
    assert half_in_shadow(crop) > 1.5  # the far half of the face is in shadow
    for name, service in member_services.items():
        ordinary = verify_one(service, photos[cut], photos[loose])
        assert ordinary.score > ordinary.threshold + 0.1, f"{name}: {person}'s loose photos are a hard pair"
        r = verify_one(service, crop, photos[loose])
        assert r.same, f"{name}: {person} scored {r.score:.3f} < {r.threshold:.3f}"


@pytest.mark.parametrize(("person", "cut", "loose", "seed"), CASES)
def test_the_five_points_on_a_hard_crop_are_where_the_face_is(shared_pipeline, tmp_path, person, cut, loose, seed):
    photos = sorted((LFW / person).glob("*.jpg"))
    crop, truth = hard_crop(shared_pipeline, photos[cut], seed, tmp_path / "crop.png")
    found = shared_pipeline.one_face(load_image(crop, max_pixels=10**8, min_side=8), strict=False)
    eye_distance = float(np.linalg.norm(truth[1] - truth[0]))
    off = np.linalg.norm(found.face.landmarks - truth, axis=1) / eye_distance
    # Within a tenth of the eye distance on average, no point beyond 0.15 (MTCNN's own points move by a median
    # 0.06 between a loose photo and the same photo greyscale under one light).
    assert off.mean() < 0.10 and off.max() < 0.15, f"{person}: points off by {np.round(off, 3)} eye distances"
    assert found.quality.preparation == "tight" and found.face.points == "refined"


@pytest.mark.parametrize(("person", "cut", "loose", "seed"), MATCH_CASES)
def test_each_of_the_five_points_on_the_crops_that_verify_is_within_a_tenth(shared_pipeline, tmp_path, person, cut,
                                                                           loose, seed):
    """The crops the verification test matches (light up to 25° to the side, as the issue's photos): every one of
    the five points within a tenth of the eye distance of the loose photo's, carried into the crop."""
    photos = sorted((LFW / person).glob("*.jpg"))
    crop, truth = hard_crop(shared_pipeline, photos[cut], seed, tmp_path / "crop.png", MATCH_LIGHT)
    found = shared_pipeline.one_face(load_image(crop, max_pixels=10**8, min_side=8), strict=False)
    off = np.linalg.norm(found.face.landmarks - truth, axis=1) / float(np.linalg.norm(truth[1] - truth[0]))
    assert (off < 0.10).all(), f"{person}: points off by {np.round(off, 3)} eye distances"
