"""Turning untrusted bytes into an upright 8-bit RGB array, or one clear error.

Every check that can be made from the header (size, pixel count) is made before decoding, so a 50-megapixel upload or
a decompression bomb costs nothing. Phone photos decode like any other: HEIC/HEIF through pillow-heif (registered
here as a Pillow plugin, so the same header checks apply), AVIF through Pillow's own support; the EXIF orientation
is applied to every format.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from idsvc.errors import IdsvcError, short_path

try:  # HEIC/HEIF (iPhones' default): a Pillow plugin, read with the same limits as every other format
    from pillow_heif import register_heif_opener

    register_heif_opener(thumbnails=False)
except ImportError:  # pragma: no cover - a dependency; without it a HEIC photo is not_an_image
    pass

#: An image to read: a path (the CLI), or raw bytes with a name for messages (the HTTP API).
ImageInput = str | Path | tuple[bytes, str]


def source_name(image: ImageInput) -> str:
    """How messages and results name an image: its path, or the upload's file name."""
    return image[1] if isinstance(image, tuple) else str(image)

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".heic",
                  ".heif", ".avif"}


@dataclass(frozen=True)
class LoadedImage:
    """(H, W, 3) uint8 RGB pixels, already EXIF-rotated, with the sha256 of the original bytes.

    ``source`` names the image in messages (the path as given, or an upload's file name); ``origin`` is the absolute
    path of a file on this machine, None for uploaded bytes — only an origin is ever opened again (to re-make a lost
    crop), so an upload's file name is never used as a server path."""

    pixels: np.ndarray
    sha256: str
    source: str
    origin: str | None = None
    format: str | None = None  # as Pillow named the decoded file: JPEG, PNG, HEIF, AVIF, …

    @property
    def stored_source(self) -> str:
        """What the registry records as the template's ``source_path``: the file's absolute path, or
        ``upload:NAME`` with the upload's name cleaned of control characters (a label, never a path)."""
        if self.origin is not None:
            return self.origin
        label = "".join(ch for ch in self.source if ch.isprintable())[:200]
        return f"upload:{label}"


def refused(p: Path) -> IdsvcError | None:
    """Why a named path cannot be read as a photo, or None for a regular file: ``file_not_found`` when nothing is
    there to read (no such name, a dangling link, a path through a file, a folder, a FIFO), ``file_unreadable`` when
    the OS refuses the name (too long, a symlink loop, permissions, an I/O error) — ``Path.is_file`` would call a
    loop "not a file", which hides the reason."""
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return IdsvcError("file_not_found", f"{short_path(p)}: no such file", path=str(p))
    except OSError as exc:
        return IdsvcError("file_unreadable", f"{short_path(p)}: cannot read ({exc.strerror or exc.__class__.__name__})",
                          path=str(p))
    if not stat.S_ISREG(st.st_mode):
        return IdsvcError("file_not_found", f"{short_path(p)}: not a file", path=str(p))
    return None


def read_bytes(path: str | Path) -> bytes:
    """Raises ``file_not_found`` or ``file_unreadable`` (``refused``)."""
    p = Path(path)
    try:
        problem = refused(p)
        if problem is not None:
            raise problem
        return p.read_bytes()
    except OSError as exc:
        raise IdsvcError("file_unreadable", f"{short_path(p)}: cannot read ({exc.strerror or exc.__class__.__name__})",
                         path=str(p)) from None


def is_file(p: Path) -> bool:
    """``Path.is_file`` that answers False, rather than raising, for a name the OS refuses (too long, bad bytes)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def decode_image(data: bytes, source: str, *, max_pixels: int, min_side: int) -> LoadedImage:
    """Decode ``data`` into upright RGB.

    Accepts RGB, greyscale, palette, RGBA/LA (composited on white), CMYK and 16-bit images.
    Raises ``not_an_image``, ``truncated_image``, ``too_large`` or ``image_too_small``.
    """
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise IdsvcError(
                    "too_large",
                    f"{source}: image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
                    f"{max_pixels / 1e6:.1f} MP",
                    path=source, width=width, height=height,
                )
            img.load()
            file_format = img.format
    except IdsvcError:
        raise
    except UnidentifiedImageError:
        raise IdsvcError("not_an_image", f"{source}: not an image file", path=source) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise IdsvcError("too_large", f"{source}: image has too many pixels", path=source) from None
    except (OSError, SyntaxError, ValueError) as exc:
        why = " ".join(str(exc).split())  # one line: some decoders' messages end in a newline
        raise IdsvcError("truncated_image", f"{source}: image data is truncated or corrupt ({why})",
                         path=source) from None
    if min(width, height) < min_side:
        raise IdsvcError("image_too_small", f"{source}: image is {width}x{height}, smaller than {min_side} px",
                         path=source, width=width, height=height)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - a broken EXIF block should not cost the photo
        log.debug("%s: EXIF orientation ignored (%s)", source, exc.__class__.__name__)
    return LoadedImage(pixels=_to_rgb(img), sha256=digest, source=source, format=file_format)


def load_image(path: str | Path, *, max_pixels: int, min_side: int) -> LoadedImage:
    image = decode_image(read_bytes(path), str(path), max_pixels=max_pixels, min_side=min_side)
    return replace(image, origin=str(Path(path).resolve()))


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit, 32-bit and float greyscale say nothing of their scale (a 12-bit sensor, 8-bit values widened, a
        # float in [0, 1]): stretch the values present to 0..255, as a viewer's auto-contrast does. Dividing by the
        # type's maximum turned an 8-bit face saved as 16-bit into a black frame with "no face".
        arr = np.asarray(img).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        grey = np.zeros(arr.shape, np.uint8) if hi <= lo else np.round((arr - lo) / (hi - lo) * 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def image_files(folder: Path) -> list[Path]:
    """Every image under ``folder`` (recursive, image suffixes only), in a stable order."""
    return sorted(f for f in folder.rglob("*") if is_file(f) and f.suffix.lower() in IMAGE_SUFFIXES)


def people_folders(folder: Path) -> dict[str, list[Path]]:
    """``{sub-folder name: its images}`` for the immediate sub-folders of ``folder`` that hold images
    (face_recognition's ``known/<name>/`` layout)."""
    out = {d.name: image_files(d) for d in sorted(folder.iterdir()) if d.is_dir()}
    return {name: files for name, files in out.items() if files}


def check_one_person(paths: list[str]) -> None:
    """Refuse a folder whose photos sit in several sub-folders: that is the layout of many people, and enrolling it
    under one name would merge them. Raises ``invalid_argument`` naming the sub-folders."""
    for raw in paths:
        p = Path(raw).expanduser()
        if is_dir(p):
            people = people_folders(p)
            if len(people) > 1:
                shown = ", ".join(list(people)[:5]) + (", …" if len(people) > 5 else "")
                raise IdsvcError("invalid_argument", f"{p} holds photos in {len(people)} sub-folders ({shown}): use "
                                 f"`idsvc enroll --each {p}` for one identity per sub-folder, or --recursive if they "
                                 "are all one person", path=str(p), folders=list(people))


def gather(images: Sequence[ImageInput], *, keep_missing: bool = False) -> list[ImageInput]:
    """The photos a request names, checked before any model loads: an upload as it is; a path expanded (a file, a
    folder searched recursively, a glob), in a stable order without duplicates. Raises ``invalid_argument`` (no
    photos at all) and ``file_not_found`` for a path that matches nothing — unless ``keep_missing`` (enroll), where
    such a path stays in the list and is rejected on its own when it is read."""
    expand = expand_paths if keep_missing else existing_files
    paths = [str(i) for i in images if not isinstance(i, tuple)]
    if len(paths) == len(images):
        out: list[ImageInput] = list(expand(paths)) if paths else []
    else:
        out = []
        for image in images:
            out += [image] if isinstance(image, tuple) else expand([str(image)])
    if not out:
        raise IdsvcError("invalid_argument", "no images given")
    return out


def existing_files(paths: list[str]) -> list[Path]:
    """``expand_paths``, refusing the whole batch when a path matches nothing (before any model loads).
    Raises ``file_not_found`` or ``invalid_argument`` (no images at all)."""
    files = expand_paths(paths)
    missing = [(f, problem) for f in files if (problem := refused(f)) is not None]
    if missing:
        first = missing[0][1]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise IdsvcError(first.code, first.message + more, **first.details)
    if not files:
        raise IdsvcError("invalid_argument", "no images given (folders are searched for image files)")
    return files


def expand_paths(paths: list[str]) -> list[Path]:
    """Files, folders (recursive, image suffixes only) and globs, in a stable order, duplicates removed.

    A path that matches nothing is kept, so the caller reports it as ``file_not_found``.
    """
    import glob

    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if is_dir(p):
            out.extend(image_files(p))
        elif is_file(p):
            out.append(p)
        elif any(ch in raw for ch in "*?["):
            out.extend(sorted(Path(m) for m in glob.glob(str(p), recursive=True) if is_file(Path(m))))
        else:
            out.append(p)
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve() if is_file(f) else f
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique
