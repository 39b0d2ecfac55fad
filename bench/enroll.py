"""End-to-end enroll throughput on real LFW photos, beside a bare facenet-pytorch MTCNN + encoder loop over the same
photos in the same run.

idsvc's enroll does more per photo than the bare loop — EXIF handling, sha256, the quality gate, a 5-point
similarity alignment, a registry transaction every 16 photos, a stored crop, and an atomic index save. It enrolls the
photos as a library (`idsvc enroll --each`: one folder per person, one call), the path that batches detection and
embedding across people; then searches all of them in one batch (`idsvc search DIR`). ``--models`` runs both with
each checkpoint in a fresh home (default: the shipped model), so each model's cost is stated beside the bare loop.

The machine this runs on is shared and noisy (the same enroll took 6.3 s and 8.0 s within an hour), so a single
pair of timings says little: ``--repeat`` rounds (default 3) each run the bare loop and then every idsvc path, and the
table gives medians and each round's own ratio. Every round enrolls into a fresh home with the encoder and detector
loaded once, as one CLI process or server keeps them; the bare loop likewise keeps its MTCNN and network.

    python bench/enroll.py [--photos 200] [--repeat 3]
                           [--models data/models/idsvc-facenet.pt data/models/idsvc-default.pt]
                           [--runtimes onnxruntime onnxruntime-int8]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds; each runs the bare loop and every idsvc path once, interleaved (default 3)")
    args = ap.parse_args()
    photos = lfw_photos(args.photos)
    load_start = os.getloadavg()[0]

    from facenet_pytorch import MTCNN
    from PIL import Image

    from idsvc.encoders.int8 import numerics
    from idsvc.encoders.load import load_encoder, load_model
    from idsvc.faces.detect import Detector
    from idsvc.faces.images import load_image
    from idsvc.home.pipeline import Pipeline
    from idsvc.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(home=Path(tmp) / "home", device="cpu")
        facenet = load_encoder(s.model.with_name("idsvc-facenet.pt"), device="cpu")  # what the bare loop runs
        mtcnn = MTCNN(image_size=160, margin=32, post_process=True)

        def bare() -> int:
            """facenet-pytorch's own crop (MTCNN box + margin, no alignment) and the FaceNet network."""
            faces = [c for c in (mtcnn(Image.open(p).convert("RGB")) for _, p in photos) if c is not None]
            with torch.inference_mode():
                for i in range(0, len(faces), 32):
                    facenet.model(torch.stack(faces[i:i + 32]))
            return len(faces)

        people = Path(tmp) / "people"  # the photos as a library of people folders (`idsvc enroll --each`)
        for name, p in photos:
            (people / name).mkdir(parents=True, exist_ok=True)
            (people / name / p.name).symlink_to(p)
        # One encoder and detector per path for every round, as one process (the CLI, a server) keeps them; each
        # round enrolls into a fresh home.
        paths = []
        for model, runtime in [(m, rt) for m in args.models or [s.model] for rt in args.runtimes]:
            si = load_settings(home=Path(tmp) / "unused", model=model, device="cpu", cpu_runtime=runtime)
            enc = load_model(model, si)  # as the active model is loaded
            paths.append((f"{model.name}, {runtime} ({numerics(enc)}, {enc.dim}-d)", model, runtime, enc, Detector(si)))

        times: dict[str, list[float]] = {}
        kept: dict[str, int] = {}
        agree = []
        for r in range(args.repeat):
            t0 = time.perf_counter()
            kept["bare"] = bare()
            times.setdefault("bare", []).append(time.perf_counter() - t0)
            for i, (label, model, runtime, enc, detector) in enumerate(paths):
                si = load_settings(home=Path(tmp) / f"home{r}-{i}", model=model, device="cpu", cpu_runtime=runtime)
                svc = Service(si, encoder=enc, pipeline=Pipeline(si, enc, detector))
                t0 = time.perf_counter()
                kept[f"enroll {label}"] = svc.enroll_each([people]).accepted
                times.setdefault(f"enroll {label}", []).append(time.perf_counter() - t0)
                agree.append(svc.status().index.in_agreement)
                t0 = time.perf_counter()
                results = svc.search([str(p) for _, p in photos])
                kept[f"search {label}"] = sum(1 for res in results if res.positive)
                times.setdefault(f"search {label}", []).append(time.perf_counter() - t0)
                svc.close()

        # Detection alone, both ways, on the same decoded photos in batches of 16 (as enroll batches them).
        pixels = [load_image(p, max_pixels=s.max_image_pixels, min_side=s.min_image_side).pixels for _, p in photos]
        batches = [pixels[i:i + 16] for i in range(0, len(pixels), 16)]
        ours_det = paths[0][4]
        detect_rows = []
        for label, run in [("facenet-pytorch MTCNN.detect", lambda b: mtcnn.detect(np.stack(b), landmarks=True)),
                           ("idsvc Detector (idsvc.faces.mtcnn)", ours_det.detect_batch)]:
            t0 = time.perf_counter()
            for b in batches:
                with torch.inference_mode():
                    run(b)
            detect_rows.append([label, len(pixels), time.perf_counter() - t0])

    n, base = len(photos), statistics.median(times["bare"])
    rows = []
    for key, took in times.items():
        if key == "bare":
            continue
        kind, label = key.split(" ", 1)
        what = f"idsvc enroll --each, {label}" if kind == "enroll" else f"idsvc search (batch of {n}), {label}"
        ratios = ", ".join(f"{b / t:.2f}" for b, t in zip(times["bare"], took))
        med = statistics.median(took)
        rows.append([what, n, kept[key], med, n / med, base / med, ratios])
    print(f"# enroll throughput on {n} LFW photos — {machine()}, torch threads {torch.get_num_threads()}; "
          f"load {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print("# idsvc enroll = detect, align, gate, embed, registry, crop, index (faces kept); search: photos identified")
    print(f"# {args.repeat} rounds, each the bare loop then every idsvc path; seconds are medians over the rounds, "
          "the ratio is median bare / median idsvc, and each round's own ratio follows")
    print(table(["path", "photos", "faces kept / found", "seconds", "photos/s", "ratio vs bare", "ratio per round"],
                [*rows, ["bare facenet-pytorch MTCNN crop + encoder", n, kept["bare"], base, n / base, 1.0,
                         ", ".join(f"{t:.2f} s" for t in times["bare"])]]))
    print(f"registry/index agree after each run: {all(agree)}; peak RSS {peak_rss_mb():.0f} MB")
    det_base = detect_rows[0][2]
    print("\n# detection alone, same decoded photos, batches of 16")
    print(table(["detector", "photos", "seconds", "photos/s", "ratio vs facenet-pytorch"],
                [[*r, r[1] / r[2], det_base / r[2]] for r in detect_rows]))


if __name__ == "__main__":
    main()
