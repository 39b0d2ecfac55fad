"""Image intake: every bad input is one clear error with a stable code; odd but valid formats decode upright."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from idsvc.errors import IdsvcError
from idsvc.faces.images import decode_image, expand_paths, load_image

LIMITS = {"max_pixels": 40_000_000, "min_side": 32}


def test_real_photo_decodes_to_rgb_with_its_hash(photos):
    p = photos("lfw", "Aaron_Peirsol", 1)[0]
    img = load_image(p, **LIMITS)
    assert img.pixels.shape == (250, 250, 3) and img.pixels.dtype == np.uint8
    import hashlib

    assert img.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("make, code", [
    (lambda p: p.write_text("hello, not a picture"), "not_an_image"),
    (lambda p: p.write_bytes(b""), "not_an_image"),
    (lambda p: Image.new("RGB", (1, 1)).save(p, "PNG"), "image_too_small"),
    (lambda p: Image.new("L", (7100, 7100)).save(p, "PNG"), "too_large"),  # 50.4 MP, refused from the header
])
def test_bad_inputs_have_stable_codes(tmp_path, make, code):
    p = tmp_path / "bad.png"
    make(p)
    with pytest.raises(IdsvcError) as err:
        load_image(p, **LIMITS)
    assert err.value.code == code
    assert str(p) in err.value.message and "\n" not in err.value.message


def test_truncated_jpeg(photos, tmp_path):
    src = photos("samples", "kate_siegel", 1)[0]
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(src.read_bytes()[:20_000])
    with pytest.raises(IdsvcError) as err:
        load_image(cut, **LIMITS)
    assert err.value.code == "truncated_image"


def test_missing_path():
    with pytest.raises(IdsvcError) as err:
        load_image("/no/such/photo.jpg", **LIMITS)
    assert err.value.code == "file_not_found"


def _real(photos) -> Image.Image:
    return Image.open(photos("lfw", "Aaron_Peirsol", 1)[0]).convert("RGB")


@pytest.mark.parametrize("mode", ["CMYK", "L", "P", "RGBA", "LA", "I;16"])
def test_other_modes_decode_to_rgb(photos, mode):
    base = _real(photos)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L")).astype(np.uint16) * 257)
        img = Image.fromarray(arr)  # uint16 -> mode "I;16"
        assert img.mode.startswith("I;16")
        fmt = "PNG"
    else:
        img = base.convert(mode)
        fmt = "JPEG" if mode in ("CMYK", "L") else "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt)
    out = decode_image(buf.getvalue(), f"x.{fmt.lower()}", **LIMITS)
    assert out.pixels.shape == (250, 250, 3) and out.pixels.dtype == np.uint8
    grey_ref = np.asarray(base.convert("L"), dtype=float)
    grey_out = out.pixels.astype(float).mean(axis=2)
    assert np.corrcoef(grey_ref.ravel(), grey_out.ravel())[0, 1] > 0.9  # same picture, not noise


def test_exif_rotation_is_applied(photos, tmp_path):
    base = _real(photos)
    rotated = base.rotate(90, expand=True)  # pixels stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90° clockwise to display"
    p = tmp_path / "rotated.jpg"
    rotated.save(p, "JPEG", exif=exif.tobytes(), quality=95)
    out = load_image(p, **LIMITS)
    diff = np.abs(out.pixels.astype(int) - np.asarray(base, dtype=int)).mean()
    assert diff < 8, "EXIF orientation was not applied"


def test_expand_paths_files_folders_globs(photos, tmp_path):
    a = photos("lfw", "Abdullah_Gul", 1, 2, 3)
    found = expand_paths([str(a[0].parent), str(a[0]), str(tmp_path / "photos" / "*" / "*_0002.jpg"), "/nope.jpg"])
    assert [p.name for p in found] == [p.name for p in a] + ["nope.jpg"]
