"""End-to-end enroll throughput on real LFW photos, beside a bare facenet-pytorch MTCNN + encoder loop over the same
photos in the same run.

idsvc's enroll does more per photo than the bare loop — EXIF handling, sha256, the quality gate, a 5-point
similarity alignment, a registry transaction every 16 photos, a stored crop, and an atomic index save — so the ratio
is the price of those guarantees. ``--models`` enrolls the same photos again with other checkpoints (SFace, a
fusion) in fresh homes, so their cost is stated beside the single model's.

    python bench/enroll.py [--photos 200] [--models data/models/idsvc-facenet.pt data/models/idsvc-default.pt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, peak_rss_mb, table
from idsvc.settings import SHARED_DATA, load_settings


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
    ap.add_argument("--models", type=Path, nargs="*", default=[], help="checkpoints to enroll with as well")
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
        facenet = load_encoder(s.model.with_name("idsvc-facenet.pt"), device="cpu")  # what the bare loop runs

        # Bare: facenet-pytorch's own crop (MTCNN box + margin, no alignment) and the FaceNet network.
        mtcnn = MTCNN(image_size=160, margin=32, post_process=True)
        t0 = time.perf_counter()
        faces = []
        for _, p in photos:
            crop = mtcnn(Image.open(p).convert("RGB"))
            if crop is not None:
                faces.append(crop)
        with torch.inference_mode():
            for i in range(0, len(faces), 32):
                facenet.model(torch.stack(faces[i:i + 32]))
        bare = time.perf_counter() - t0

        rows, agree = [], []
        for i, model in enumerate([s.model, *args.models]):
            si = load_settings(home=Path(tmp) / f"home{i}", model=model, device="cpu")
            enc_i = enc if model == s.model else load_encoder(model, device="cpu")
            svc = Service(si, encoder=enc_i, pipeline=Pipeline(si, enc_i))
            t0 = time.perf_counter()
            by_person: dict[str, list[str]] = {}
            for name, p in photos:
                by_person.setdefault(name, []).append(str(p))
            accepted = 0
            for name, paths in by_person.items():
                accepted += len(svc.enroll(name, paths)["accepted"])
            ours = time.perf_counter() - t0
            agree.append(svc.status()["index"]["in_agreement"])
            svc.close()
            rows.append([f"idsvc enroll, {model.name} ({enc_i.dim}-d)", len(photos), accepted, ours,
                         len(photos) / ours, bare / ours])
    n = len(photos)
    print(f"# enroll throughput on {n} LFW photos — {machine()}, torch threads {torch.get_num_threads()}")
    print("# idsvc enroll = detect, align, gate, embed, registry, crop, index")
    print(table(["path", "photos", "faces kept", "seconds", "photos/s", "ratio vs bare"], [
        *rows, ["bare facenet-pytorch MTCNN crop + encoder", n, len(faces), bare, n / bare, 1.0]]))
    print(f"registry/index agree after each run: {all(agree)}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
