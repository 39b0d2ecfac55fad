"""MTCNN on real photos, face choice, alignment onto the template and the quality gate."""

from __future__ import annotations

import numpy as np
import pytest

from idsvc.errors import IdsvcError
from idsvc.faces.align import align
from idsvc.faces.images import load_image
from idsvc.landmarks import TEMPLATE_160, template
from tests.conftest import SAMPLES


def _load(p):
    return load_image(p, max_pixels=40_000_000, min_side=32)


def test_group_photo_has_six_faces(shared_pipeline):
    faces = shared_pipeline.detector.detect(_load(SAMPLES / "multiface.jpg").pixels)
    assert len(faces) == 6
    assert all(f.prob > 0.99 for f in faces)
    with pytest.raises(IdsvcError) as err:
        shared_pipeline.one_face(_load(SAMPLES / "multiface.jpg"))
    assert err.value.code == "multiple_faces"


def test_bystander_does_not_make_a_photo_ambiguous(shared_pipeline):
    # Angelina Jolie's photo has a second, tiny low-probability detection; the photo is still about one person.
    img = _load(SAMPLES / "test_images" / "angelina_jolie" / "1.jpg")
    assert len(shared_pipeline.detector.detect(img.pixels)) >= 2
    fc = shared_pipeline.one_face(img)
    assert fc.face.size > 500


def test_large_photo_is_downscaled_for_detection_and_boxes_map_back(shared_pipeline):
    img = _load(SAMPLES / "test_images" / "paul_rudd" / "1.jpg")  # 2048 px tall
    assert max(img.pixels.shape) > shared_pipeline.settings.detect_max_side
    f = shared_pipeline.detector.detect(img.pixels)[0]
    x1, y1, x2, y2 = f.box
    assert 0 <= x1 < x2 <= img.pixels.shape[1] and 0 <= y1 < y2 <= img.pixels.shape[0]
    assert f.size > 500  # in full-resolution pixels


def test_alignment_puts_landmarks_on_the_template(shared_pipeline, photos):
    img = _load(photos("lfw", "Colin_Powell", 1)[0])
    f = shared_pipeline.detector.detect(img.pixels)[0]
    a = align(img.pixels, f.landmarks, 160)
    assert a.crop.shape == (160, 160, 3)
    assert np.abs(a.landmarks - TEMPLATE_160).max() < 12  # a similarity transform can't fit 5 points exactly
    assert np.allclose(template(112), TEMPLATE_160 * 0.7)


def test_quality_measures_and_gate(shared_pipeline, photos):
    img = _load(photos("lfw", "Colin_Powell", 1)[0])
    fc = shared_pipeline.one_face(img)
    assert fc.quality.face_px > 60 and fc.quality.sharpness > 10 and fc.quality.yaw < 0.3
    import cv2

    blurred = img.__class__(pixels=cv2.GaussianBlur(img.pixels, (0, 0), 6), sha256="x", source="blurred.jpg")
    with pytest.raises(IdsvcError) as err:
        shared_pipeline.one_face(blurred)
    assert err.value.code in ("low_quality", "no_face")
    if err.value.code == "low_quality":
        assert "blurry" in err.value.message


def test_no_face(shared_pipeline, tmp_path):
    from PIL import Image

    # A real photo with the face cut out: the top-left corner of an LFW photo (background only).
    img = Image.open(sorted((SAMPLES.parent / "lfw" / "images" / "Colin_Powell").glob("*.jpg"))[0])
    p = tmp_path / "corner.png"
    img.crop((0, 0, 60, 60)).resize((120, 120)).save(p)
    with pytest.raises(IdsvcError) as err:
        shared_pipeline.one_face(_load(p))
    assert err.value.code == "no_face"


def _mtcnn_batches():
    from tests.conftest import LFW

    lfw = [_load(p).pixels for d in sorted(LFW.iterdir())[:12] for p in sorted(d.glob("*.jpg"))[:1]]
    group = _load(SAMPLES / "multiface.jpg").pixels
    return [np.stack(lfw), group[None], np.stack([group, group[:, ::-1]])]


def test_idsvc_mtcnn_finds_what_facenet_pytorch_finds(shared_pipeline):
    """idsvc.faces.mtcnn (vectorised crops, ONNX Runtime stages) against facenet-pytorch's own ``MTCNN.detect``: the
    same faces, in the same order, boxes and landmarks within 0.01 px, probabilities within 1e-4."""
    import torch

    from idsvc.faces.mtcnn import detect_faces

    det = shared_pipeline.detector
    assert any(not isinstance(n, torch.nn.Module) for n in det._nets)  # the ONNX Runtime path is the one tested
    faces = 0
    for batch in _mtcnn_batches():
        with torch.inference_mode():
            boxes, probs, points = det._mtcnn.detect(batch, landmarks=True)
            ours = detect_faces(batch, det._nets, min_face=det.min_face, thresholds=det._thresholds)
        for j, (b, p, pt) in enumerate(ours):
            assert len(b) == (0 if boxes[j] is None else len(boxes[j]))
            if len(b):
                assert np.abs(b - boxes[j]).max() < 0.01 and np.abs(pt - points[j]).max() < 0.01
                assert np.abs(p - np.asarray(probs[j], dtype=np.float32)).max() < 1e-4
                faces += len(b)
    assert faces >= 12 + 6 + 12


def test_a_photo_detected_in_a_batch_gives_what_it_gives_alone_bit_for_bit(shared_pipeline):
    """On the CPU path each photo of a same-size batch is detected exactly as it is alone: boxes, landmarks and
    probabilities equal to the last bit (PyTorch's batched convolutions round differently; the int8 encoder turns
    that into a different template)."""
    from tests.conftest import LFW

    det = shared_pipeline.detector
    photos = [_load(p).pixels for d in sorted(LFW.iterdir())[20:44] for p in sorted(d.glob("*.jpg"))[:1]]
    together = det.detect_batch(photos)
    alone = [det.detect(p) for p in photos]
    assert sum(len(f) for f in together) >= len(photos)
    for a, b in zip(together, alone):
        assert [(f.box, f.prob) for f in a] == [(f.box, f.prob) for f in b]
        assert all(np.array_equal(x.landmarks, y.landmarks) for x, y in zip(a, b))


def test_candidate_crops_are_the_area_average_facenet_pytorch_takes():
    """``_cut`` (one gather from a summed-area table) against ``interpolate(mode="area")`` box by box, boxes
    clipped at every edge of a real photo included."""
    import torch
    from facenet_pytorch.models.utils.detect_face import imresample

    from idsvc.faces.mtcnn import _cut

    img = torch.from_numpy(_load(SAMPLES / "multiface.jpg").pixels.copy()).permute(2, 0, 1)[None].float()
    h, w = img.shape[2:]
    y, ey = np.array([1, 1, 40, h - 30, 100, 7]), np.array([24, 300, 41 + 97, h, 101, 8])
    x, ex = np.array([1, w - 50, 1, 200, 100, 9]), np.array([24, w, 13, 260, 101, 10])
    owner = torch.zeros(len(y), dtype=torch.long)
    for size in (24, 48):
        ours = _cut(img, owner, (y, ey, x, ex), size)
        theirs = torch.cat([imresample(img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size)) for k in range(len(y))])
        assert torch.allclose(ours, theirs, atol=1e-3), (ours - theirs).abs().max()


@pytest.mark.gpu
def test_detection_on_a_gpu_finds_the_cpu_faces(shared_pipeline):
    import torch

    from idsvc.faces.detect import Detector

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    gpu = Detector(shared_pipeline.settings, torch.device("cuda"))
    for batch in _mtcnn_batches():
        for ours, theirs in zip(gpu.detect_batch(list(batch)), shared_pipeline.detector.detect_batch(list(batch))):
            assert len(ours) == len(theirs)
            assert all(np.abs(np.subtract(a.box, b.box)).max() < 0.05 for a, b in zip(ours, theirs))


def test_loading_yunet_prints_nothing_and_leaves_opencvs_log_level(capfd):
    """OpenCV 5 warns on stderr as it builds YuNet's network; a command's output must not carry that line, and the
    process's OpenCV log level is the caller's again afterwards."""
    import cv2

    from idsvc.faces.yunet import YuNet

    before = cv2.utils.logging.getLogLevel()
    yunet = YuNet()
    assert yunet.detect(_load(SAMPLES / "test_images" / "angelina_jolie" / "1.jpg").pixels)
    assert "WARN" not in capfd.readouterr().err
    assert cv2.utils.logging.getLogLevel() == before
