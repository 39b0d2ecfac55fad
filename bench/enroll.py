"""End-to-end enroll throughput on real LFW photos, beside a bare facenet-pytorch MTCNN + encoder loop over the same
photos in the same run.

idsvc's enroll does more per photo than the bare loop — EXIF handling, sha256, the quality gate, a 5-point
similarity alignment, a registry transaction every 16 photos, a stored crop, and an atomic index save. It enrolls the
photos as a library (`idsvc enroll --each`: one folder per person, one call), the path that batches detection and
embedding across people; then searches all of them in one batch (`idsvc search DIR`). ``--models`` runs both with
each checkpoint in a fresh home (default: the shipped model), so each model's cost is stated beside the bare loop.

    python bench/enroll.py [--photos 200] [--models data/models/idsvc-facenet.pt data/models/idsvc-default.pt]
                           [--runtimes onnxruntime onnxruntime-int8]
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
from bench._util import machine, peak_rss_mb, table
from idsvc.settings import SHARED_DATA, Settings, load_settings


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
    ap.add_argument("--models", type=Path, nargs="*", default=[],
                    help="checkpoints to enroll with (default: the shipped default model)")
    ap.add_argument("--runtimes", nargs="*", default=[Settings().cpu_runtime],
                    choices=["auto", "onnxruntime", "onnxruntime-int8", "torch"],
                    help="IDSVC_CPU_RUNTIME values to run each model with (default: the default; "
                         "onnxruntime is float32)")
    args = ap.parse_args()
    photos = lfw_photos(args.photos)

    from facenet_pytorch import MTCNN
    from PIL import Image

    from idsvc.active_model import load_model
    from idsvc.int8 import numerics
    from idsvc.encoder import load_encoder
    from idsvc.pipeline import Pipeline
    from idsvc.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(home=Path(tmp) / "home", device="cpu")
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

        # Detection alone, both ways, on the same decoded photos in batches of 16 (as enroll batches them).
        from idsvc.detect import Detector
        from idsvc.imageio import load_image

        pixels = [load_image(p, max_pixels=s.max_image_pixels, min_side=s.min_image_side).pixels for _, p in photos]
        batches = [pixels[i:i + 16] for i in range(0, len(pixels), 16)]
        ours_det = Detector(s)
        ours_det.detect_batch(batches[0])  # warm: exports MTCNN's stages for ONNX Runtime once per user
        detect_rows = []
        for label, run in [("facenet-pytorch MTCNN.detect", lambda b: mtcnn.detect(np.stack(b), landmarks=True)),
                           ("idsvc Detector (idsvc.mtcnn)", ours_det.detect_batch)]:
            t0 = time.perf_counter()
            for b in batches:
                with torch.inference_mode():
                    run(b)
            detect_rows.append([label, len(pixels), time.perf_counter() - t0])

        people = Path(tmp) / "people"  # the photos as a library of people folders (`idsvc enroll --each`)
        for name, p in photos:
            (people / name).mkdir(parents=True, exist_ok=True)
            (people / name / p.name).symlink_to(p)
        rows, agree = [], []
        runs = [(m, rt) for m in args.models or [s.model] for rt in args.runtimes]
        for i, (model, runtime) in enumerate(runs):
            si = load_settings(home=Path(tmp) / f"home{i}", model=model, device="cpu", cpu_runtime=runtime)
            enc_i = load_model(model, si)  # as the active model is loaded
            label = f"{model.name}, {runtime} ({numerics(enc_i)})"
            svc = Service(si, encoder=enc_i, pipeline=Pipeline(si, enc_i))
            t0 = time.perf_counter()
            accepted = svc.enroll_each(people)["accepted"]
            ours = time.perf_counter() - t0
            agree.append(svc.status()["index"]["in_agreement"])
            rows.append([f"idsvc enroll --each, {label} ({enc_i.dim}-d)", len(photos), accepted, ours,
                         len(photos) / ours, bare / ours])
            t0 = time.perf_counter()
            _, results = svc.search_many([str(p) for _, p in photos])
            found = sum(1 for r in results if r.get("identity"))
            took = time.perf_counter() - t0
            rows.append([f"idsvc search (batch of {len(photos)}), {label}", len(photos), found, took,
                         len(photos) / took, bare / took])
            svc.close()
    n = len(photos)
    print(f"# enroll throughput on {n} LFW photos — {machine()}, torch threads {torch.get_num_threads()}")
    print("# idsvc enroll = detect, align, gate, embed, registry, crop, index (faces kept); search: photos identified")
    print(table(["path", "photos", "faces kept / found", "seconds", "photos/s", "ratio vs bare"], [
        *rows, ["bare facenet-pytorch MTCNN crop + encoder", n, len(faces), bare, n / bare, 1.0]]))
    print(f"registry/index agree after each run: {all(agree)}; peak RSS {peak_rss_mb():.0f} MB")
    base = detect_rows[0][2]
    print("\n# detection alone, same decoded photos, batches of 16")
    print(table(["detector", "photos", "seconds", "photos/s", "ratio vs facenet-pytorch"],
                [[*r, r[1] / r[2], base / r[2]] for r in detect_rows]))


if __name__ == "__main__":
    main()
