"""The proxy family: real photos degraded to model the failures of photos our benchmarks do not cover — built twice,
from CelebA (every choice is made on these) and from LFW View 2 (only to report). Never in git.

Each proxy is a folder ``OUT/<dataset>/<proxy>/`` with ``images/<Name>/<Name>_NNNN.<ext>`` and ``pairs.txt`` in LFW's
format, so ``idsvc eval pairs --images OUT/lfw/tight-grey-light/images --pairs OUT/lfw/tight-grey-light/pairs.txt``
scores it, and ``bench/accuracy.py`` scores every member inside idsvc and in its own reference pipeline on it. A
transform is drawn per photo from a generator seeded by the photo's name, so a proxy is the same on every machine.

The landmarks a transform works from are MTCNN's on the *original* loose photo (where it is reliable); the photo
given to idsvc is the degraded one, and idsvc must find the face again.

    python bench/proxies.py --out .scratch/proxies [--datasets celeba lfw] [--proxies tight-grey-light ...]

| proxy | what it models |
|---|---|
| none | the photo as it is |
| tight-112 | a square cut from the eyebrows to the chin, 112×112: the face is wider than the frame |
| tight-168x192 | the same at 168×192 (the framing of an ID scanner or a door camera's face crop) |
| arcface-112 | an ArcFace-aligned 112×112 crop, as other face systems export them |
| grey-light | the loose photo in greyscale under one point light 25–65° to the side: half the face in shadow |
| tight-grey-light | tight-168x192, greyscale, the same light: both mechanisms at once (an infrared door camera) |
| tight-grey-light25 | the same with the light 0–25° to the side, as the issue's own photos were lit |
| low-light | a dark exposure brightened back: sensor and quantisation noise |
| blur | motion (7–15 px) or defocus (2.5–4.5 px radius) blur |
| jpeg20 | JPEG quality 20 |
| small | the photo scaled so the eyes are 24–40 px apart |
| sunglasses | a dark band over the eyes |
| mask | a light band from the nose to the chin |
| yaw | (no transform) only the pairs with a face turned ≥ ~30° in either photo |
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.faces.align import align
from idsvc.faces.images import load_image
from idsvc.landmarks import ARCFACE_112, similarity
from idsvc.measurement.degrade import (
    Transform,
    blur,
    grey,
    jpeg20,
    low_light,
    mask,
    photometric,
    point_light,
    small,
    sunglasses,
    tight_cut,
    tight_grey_light,
)
from idsvc.measurement.pairs import read_pairs
from idsvc.settings import SHARED_DATA, load_settings


def arcface(rgb: np.ndarray, lm: np.ndarray, _rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    matrix = similarity(lm.astype(np.float32), ARCFACE_112)
    return align(rgb, lm, 112, base=ARCFACE_112).crop, matrix


PROXIES: dict[str, Transform] = {
    "none": photometric(lambda rgb, lm, rng: rgb),
    "tight-112": lambda rgb, lm, rng: tight_cut(rgb, lm, rng, (112, 112)),
    "tight-168x192": lambda rgb, lm, rng: tight_cut(rgb, lm, rng, (168, 192)),
    "arcface-112": arcface,
    "grey-light": photometric(lambda rgb, lm, rng: point_light(grey(rgb), rng)),
    "tight-grey-light": tight_grey_light,
    "tight-grey-light25": lambda rgb, lm, rng: tight_grey_light(rgb, lm, rng, (0, 25)),
    "low-light": photometric(low_light),
    "blur": photometric(blur),
    "jpeg20": photometric(jpeg20),
    "small": small,
    "sunglasses": photometric(sunglasses),
    "mask": photometric(mask),
    "yaw": photometric(lambda rgb, lm, rng: rgb),
}
#: A turned face: the nose this far from the eye midline, along the eye line, in eye distances (~30°).
YAW_MIN = 0.22


def yaw_of(lm: np.ndarray) -> float:
    eye_vec = lm[1] - lm[0]
    dist = float(np.linalg.norm(eye_vec)) or 1.0
    return abs(float(np.dot(lm[2] - (lm[0] + lm[1]) / 2, eye_vec / dist))) / dist


def celeba_pairs(root: Path, per_fold: int, seed: int) -> tuple[list[tuple[str, str, bool]], dict[Path, str]]:
    """(pairs as (photo name, photo name, same), {source photo: its name in LFW form}) for CelebA: ``per_fold``
    genuine and as many impostor pairs in each of 10 folds, identities disjoint across folds (as LFW's are)."""
    rng = random.Random(seed)
    ids = sorted(d for d in root.iterdir() if d.is_dir())
    rng.shuffle(ids)
    folds = [ids[i::10] for i in range(10)]
    names: dict[Path, str] = {}
    pairs: list[tuple[str, str, bool]] = []

    def name(p: Path) -> str:
        if p not in names:
            person = f"c{p.parent.name}"
            names[p] = f"{person}/{person}_{sorted(p.parent.glob('*.jpg')).index(p) + 1:04d}"
        return names[p]

    for group in folds:
        photos = {d: sorted(d.glob("*.jpg")) for d in group}
        genuine = [(a, b) for files in photos.values() for a, b in itertools.combinations(files, 2)]
        chosen = rng.sample(genuine, min(per_fold, len(genuine)))
        impostor: set[tuple[Path, Path]] = set()
        people = [d for d in group if photos[d]]
        while len(impostor) < len(chosen):
            x, y = rng.sample(people, 2)
            impostor.add((rng.choice(photos[x]), rng.choice(photos[y])))
        pairs += [(name(a), name(b), True) for a, b in chosen]
        pairs += [(name(a), name(b), False) for a, b in sorted(impostor)]
    return pairs, names


def write_pairs(path: Path, pairs: list[tuple[str, str, bool]], per_fold: int) -> None:
    """LFW's pairs.txt: "10 n", then per fold n matched ``name i j`` and n mismatched ``name1 i name2 j`` lines."""
    lines = [f"10\t{per_fold}"]
    for a, b, same in pairs:
        (pa, fa), (pb, fb) = a.split("/"), b.split("/")
        na, nb = int(fa.rsplit("_", 1)[1]), int(fb.rsplit("_", 1)[1])
        lines.append(f"{pa}\t{na}\t{nb}" if same else f"{pa}\t{na}\t{pb}\t{nb}")
    path.write_text("\n".join(lines) + "\n")


def sources(dataset: str, per_fold: int, seed: int) -> tuple[dict[Path, str], Path]:
    """({source photo: its name in the proxy}, a pairs.txt over those names) for a dataset."""
    out = Path(".scratch") / f"{dataset}-{per_fold}-pairs.txt"
    out.parent.mkdir(exist_ok=True)
    if dataset == "lfw":
        lfw = SHARED_DATA / "lfw"
        lines = (lfw / "pairs.txt").read_text().splitlines()
        n = int(lines[0].split()[1])
        keep = min(per_fold, n)  # the first ``keep`` genuine and impostor pairs of each of the ten folds
        out.write_text("\n".join([f"10\t{keep}"] + [ln for f in range(10) for half in (0, 1)
                                                      for ln in lines[1 + (2 * f + half) * n:][:keep]]) + "\n")
        pairs = read_pairs(out, lfw / "images")
        photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
        return {p: f"{p.parent.name}/{p.stem}" for p in photos}, out
    pairs_c, names = celeba_pairs(SHARED_DATA / "celeba", per_fold, seed)
    # keep the 10-fold structure: each fold holds exactly per_fold genuine and per_fold impostor pairs
    counts = [sum(1 for a, b, s in pairs_c[i * 2 * per_fold:(i + 1) * 2 * per_fold] if s) for i in range(10)]
    assert all(c == per_fold for c in counts), counts
    write_pairs(out, pairs_c, per_fold)
    return names, out


def yaw_pairs(pairs_file: Path, turned: set[str], out: Path) -> int:
    """pairs.txt restricted to pairs with a turned face, folds kept (each fold padded to its largest half by
    repeating lines would bias it, so the header's count becomes the smallest half over all folds)."""
    lines = pairs_file.read_text().splitlines()
    n = int(lines[0].split()[1])
    keep: list[tuple[list[str], list[str]]] = []
    for f in range(10):
        block = lines[1 + f * 2 * n:1 + (f + 1) * 2 * n]

        def turned_line(ln: str) -> bool:
            p = ln.split("\t")
            a = f"{p[0]}/{p[0]}_{int(p[1]):04d}"
            b = f"{p[0]}/{p[0]}_{int(p[2]):04d}" if len(p) == 3 else f"{p[2]}/{p[2]}_{int(p[3]):04d}"
            return a in turned or b in turned

        keep.append(([ln for ln in block[:n] if turned_line(ln)], [ln for ln in block[n:] if turned_line(ln)]))
    m = min(min(len(g), len(i)) for g, i in keep)
    out.write_text("\n".join([f"10\t{m}"] + [ln for g, i in keep for ln in g[:m] + i[:m]]) + "\n")
    return m


def build(dataset: str, names: list[str], out: Path, pairs_file: Path, photos: dict[Path, str], *,
          write_images: bool = True) -> None:
    """Write each proxy's photos, its pairs.txt and ``landmarks.json`` ({photo name: its five points in the degraded
    photo: MTCNN's on the original, carried through the transform}); with ``write_images`` false, only the last."""
    from idsvc.faces.detect import Detector

    detector = Detector(load_settings(device="cpu"))
    files = sorted(photos)
    t0, missing = time.perf_counter(), 0
    turned: set[str] = set()
    roots = {n: out / dataset / n for n in names}
    truth: dict[str, dict[str, list[list[float]]]] = {n: {} for n in names}
    for root in roots.values():
        (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(0, len(files), 64):
        part = files[i:i + 64]
        images = [load_image(p, max_pixels=10**8, min_side=8).pixels for p in part]
        for path, rgb, faces in zip(part, images, detector.detect_batch(images)):
            if faces:
                lm = faces[0].landmarks
            else:  # where MTCNN finds none, a face in the middle at an average size
                missing += 1
                h, w = rgb.shape[:2]
                lm = np.array([[0.38 * w, 0.42 * h], [0.62 * w, 0.42 * h], [0.5 * w, 0.55 * h],
                               [0.41 * w, 0.67 * h], [0.59 * w, 0.67 * h]], np.float32)
            if yaw_of(lm) >= YAW_MIN:
                turned.add(photos[path])
            for proxy, root in roots.items():
                seed = int.from_bytes(hashlib.sha256(f"{proxy}|{photos[path]}".encode()).digest()[:8], "little")
                img, matrix = PROXIES[proxy](rgb, lm, np.random.default_rng(seed))
                moved = np.c_[lm, np.ones(5)] @ np.asarray(matrix).T
                truth[proxy][photos[path]] = [[round(float(x), 2), round(float(y), 2)] for x, y in moved]
                if not write_images:
                    continue
                dst = root / "images" / (photos[path] + ".png")  # lossless: exactly what the transform made
                dst.parent.mkdir(parents=True, exist_ok=True)
                if img.ndim == 2:
                    cv2.imwrite(str(dst), img)
                else:
                    cv2.imwrite(str(dst), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    for proxy, root in roots.items():
        (root / "landmarks.json").write_text(json.dumps(truth[proxy]))
        if not write_images:
            continue
        if proxy == "yaw":
            m = yaw_pairs(pairs_file, turned, root / "pairs.txt")
            print(f"{dataset}/yaw: {m} genuine + {m} impostor pairs per fold with a face turned ≥ {YAW_MIN}")
        else:
            shutil.copy(pairs_file, root / "pairs.txt")
    print(f"{dataset}: {len(files)} photos × {len(names)} proxies in {time.perf_counter() - t0:.0f} s; "
          f"{missing} without a face on the original (a middle face assumed)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".scratch/proxies"))
    ap.add_argument("--datasets", nargs="+", default=["celeba", "lfw"], choices=["celeba", "lfw"])
    ap.add_argument("--proxies", nargs="+", default=list(PROXIES), choices=list(PROXIES))
    ap.add_argument("--celeba-per-fold", type=int, default=150, help="genuine (and impostor) pairs per fold")
    ap.add_argument("--lfw-per-fold", type=int, default=300, help="LFW's first N genuine (and impostor) pairs of "
                    "each fold (300: all of View 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--landmarks-only", action="store_true", help="only (re)write each proxy's landmarks.json")
    args = ap.parse_args()
    for dataset in args.datasets:
        photos, pairs_file = sources(dataset, args.lfw_per_fold if dataset == "lfw" else args.celeba_per_fold,
                                     args.seed)
        build(dataset, args.proxies, args.out, pairs_file, photos, write_images=not args.landmarks_only)


if __name__ == "__main__":
    main()
