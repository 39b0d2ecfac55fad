"""Measure a torch encoder's activation ranges for the int8 CPU path (``idsvc/encoders/int8.py``) and check the issue's gate
on LFW: the int8 model within 0.05 points of float32 accuracy and 0.2 points of TAR at FAR 1e-3, alone and inside
the shipped fusion.

Ranges come from CelebA (training data; one photo of each of the first ``--calibration`` identities, default all
493), never LFW. One photo of each of 160 identities measured ranges that cost FaceNet 0.05 points on LFW (TAR
0.2); of all 493, none (99.25%, TAR 97.97, against 99.22% and 97.73 in float32), as did 3 photos of 160.
They are written to ``data/models/<version>.int8.json``, which ships; commit it only when the gate holds.

    python bench/int8.py [--model data/models/idsvc-facenet.pt] [--calibration 493] [--no-lfw] [--as-shipped]

The int8 file runs as this CPU's path runs it (``for_this_cpu``: without VNNI, with uint8 weights), so a CPU without
VNNI reports the figures a VNNI one does. ``--as-shipped`` checks the shipped ranges without measuring new ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table
from idsvc.settings import DEFAULT_MODEL, PROJECT_ROOT, SHARED_DATA, load_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=PROJECT_ROOT / "data" / "models" / "idsvc-facenet.pt")
    ap.add_argument("--calibration", type=int, default=493, help="CelebA identities, one photo each (493: all)")
    ap.add_argument("--no-lfw", action="store_true")
    ap.add_argument("--as-shipped", action="store_true",
                    help="measure no ranges: check the gate with the ranges in data/models as they are")
    args = ap.parse_args()

    from idsvc.encoders.int8 import for_this_cpu, measure_ranges, quantized
    from idsvc.encoders.load import accelerate, load_encoder
    from idsvc.home.pipeline import Pipeline
    from idsvc.measurement.pairs import read_pairs
    from idsvc.measurement.verification import verification_report
    from idsvc.onnx_runtime import OnnxNetwork

    s = load_settings(home=Path(tempfile.mkdtemp()) / "home", model=args.model, device="cpu")
    enc = load_encoder(args.model, device="cpu")
    pipe = Pipeline(s, enc)
    if args.as_shipped:
        int8_file = quantized(enc, s.model_cache_dir)
        if int8_file is None:
            raise SystemExit(f"no ranges ship for {enc.version}")
    else:
        people = sorted((SHARED_DATA / "celeba").iterdir())[:args.calibration]
        crops, _, _ = pipe.eval_crops([sorted(d.glob("*.jpg"))[0] for d in people])
        out = PROJECT_ROOT / "data" / "models" / f"{enc.version}.int8.json"
        t0 = time.perf_counter()
        int8_file = measure_ranges(enc, crops, s.model_cache_dir, out)
        print(f"ranges of {enc.version} from {len(crops)} CelebA crops → {out} ({time.perf_counter() - t0:.1f} s)")
    if args.no_lfw:
        return

    lfw = SHARED_DATA / "lfw"
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    crops, _, landmarks = pipe.eval_crops(photos)
    accelerate(enc, s.model_cache_dir, int8=False)
    t0 = time.perf_counter()
    fp32 = enc.embed(crops, landmarks)
    t_fp32 = time.perf_counter() - t0
    int8_file = for_this_cpu(int8_file)  # as this CPU runs it
    enc.runtime, enc.numerics = OnnxNetwork(int8_file), "int8"
    t0 = time.perf_counter()
    int8 = enc.embed(crops, landmarks)
    t_int8 = time.perf_counter() - t0
    where = {p: i for i, p in enumerate(photos)}
    a, b = np.array([where[p.a] for p in pairs]), np.array([where[p.b] for p in pairs])
    labels, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])

    def report(ea: np.ndarray, eb: np.ndarray) -> dict:
        return verification_report(np.sum(ea[a] * eb[b], axis=1), labels, folds)

    # "mixed": one photo of each pair embedded in float32, the other in int8 — a gallery enrolled on a GPU (or with
    # IDSVC_CPU_RUNTIME=onnxruntime) searched on a CPU with int8, or the reverse.
    variants = [(f"{enc.version} float32", fp32, fp32), (f"{enc.version} int8", int8, int8),
                (f"{enc.version} mixed", fp32, int8)]
    fused = load_encoder(DEFAULT_MODEL, device="cpu")
    member = [(w, m) for w, m in getattr(fused, "members", []) if m.version == enc.version]
    if member:
        others = [(w, m.embed(crops, landmarks)) for w, m in fused.members if m.version != enc.version]
        def fuse(e: np.ndarray) -> np.ndarray:
            return np.concatenate([member[0][0] * e] + [w * o for w, o in others], axis=1)

        f32, f8 = fuse(fp32), fuse(int8)
        variants += [(f"shipped fusion, {enc.version} float32", f32, f32),
                     (f"shipped fusion, {enc.version} int8", f8, f8),
                     (f"shipped fusion, {enc.version} mixed", f32, f8)]
    rows = []
    for label, ea, eb in variants:
        r = report(ea, eb)
        rows.append([label, f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f}", f"{r['auc']:.5f}",
                     f"{100 * r['eer']:.2f}", f"{100 * r['tar_at_far_1e-3']:.2f}"])
    cos = np.sum(fp32 * int8, axis=1)
    print(f"# int8 gate on LFW View 2 (6,000 pairs, 10 folds) — {machine()}; int8 file {int8_file.name}")
    print(table(["model", "accuracy %", "AUC", "EER %", "TAR@FAR1e-3 %"], rows))
    print(f"int8 vs float32 cosine: median {np.median(cos):.5f}, min {cos.min():.5f}; embedding {len(crops)} crops: "
          f"float32 {t_fp32:.1f} s, int8 {t_int8:.1f} s ({t_fp32 / t_int8:.2f}×)")


if __name__ == "__main__":
    main()
