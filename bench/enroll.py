"""End-to-end enroll throughput on real LFW photos, beside a bare facenet-pytorch MTCNN + encoder loop over the same
photos in the same run.

idsvc's enroll does more per photo than the bare loop — EXIF handling, sha256, the quality gate, a 5-point
similarity alignment, a registry transaction every 16 photos, a stored crop, and an atomic index save — so the ratio
is the price of those guarantees.

    python bench/enroll.py [--photos 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, peak_rss_mb, table  # noqa: E402
from idsvc.settings import SHARED_DATA, load_settings  # noqa: E402


def lfw_photos(n: int) -> list[tuple[str, Path]]:
    out = []
    for d in sorted((SHARED_DATA / "lfw" / "images").iterdir()):
        for f in sorted(d.glob("*.jpg")):
            out.append((d.name, f))
        if len(out) >= n:
            break
    return out[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--photos", type=int, default=200)
    args = ap.parse_args()
    photos = lfw_photos(args.photos)

    from facenet_pytorch import MTCNN
    from PIL import Image

    from idsvc.encoder import load_encoder
    from idsvc.pipeline import Pipeline
    from idsvc.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(home=Path(tmp) / "home", device="cpu")
        enc = load_encoder(s.model, device="cpu")

        # Bare: facenet-pytorch's own crop (MTCNN box + margin, no alignment) and the same network.
        mtcnn = MTCNN(image_size=160, margin=32, post_process=True)
        t0 = time.perf_counter()
        faces = []
        for _, p in photos:
            crop = mtcnn(Image.open(p).convert("RGB"))
            if crop is not None:
                faces.append(crop)
        with torch.inference_mode():
            for i in range(0, len(faces), 32):
                enc.model(torch.stack(faces[i:i + 32]))
        bare = time.perf_counter() - t0

        svc = Service(s, encoder=enc, pipeline=Pipeline(s, enc))
        t0 = time.perf_counter()
        by_person: dict[str, list[str]] = {}
        for name, p in photos:
            by_person.setdefault(name, []).append(str(p))
        accepted = 0
        for name, paths in by_person.items():
            accepted += len(svc.enroll(name, paths)["accepted"])
        ours = time.perf_counter() - t0
        st = svc.status()
        svc.close()
    n = len(photos)
    print(f"# enroll throughput on {n} LFW photos — {machine()}, torch threads {torch.get_num_threads()}")
    print(table(["path", "photos", "faces kept", "seconds", "photos/s", "ratio vs bare"], [
        ["idsvc enroll (detect, align, gate, embed, registry, index)", n, accepted, ours, n / ours, bare / ours],
        ["bare facenet-pytorch MTCNN crop + encoder", n, len(faces), bare, n / bare, 1.0],
    ]))
    print(f"registry/index agree after the run: {st['index']['in_agreement']}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
