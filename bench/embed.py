"""Aligned crops per second through each encoder architecture (CPU, and GPU when present), and through any
checkpoints named with --models (an SFace or fused checkpoint beside the single FaceNet model, for example).

    python bench/embed.py [--batch 32] [--seconds 10] [--models data/models/idsvc-default.pt sface.pt fused.pt]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, peak_rss_mb, table  # noqa: E402
from idsvc.encoders import nets  # noqa: E402
from idsvc.encoders.checkpoint import make_card, weights_sha256
from idsvc.encoders.load import load_encoder
from idsvc.encoders.protocol import EmbeddingModel
from idsvc.encoders.torch_encoder import Encoder  # noqa: E402


def rate(encoder: EmbeddingModel, size: int, batch: int, seconds: float) -> float:
    crops = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)
    encoder.embed(crops)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        encoder.embed(crops)
        n += batch
    if getattr(encoder.device, "type", "") == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--models", type=Path, nargs="*", default=[], help="checkpoints to time as shipped")
    args = ap.parse_args()
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for arch in nets.ARCHS:
        model = nets.build(arch).eval()
        norm = "prewhiten" if arch == "inception_resnet_v1" else "fixed"
        card = make_card(name=arch, arch=arch, embedding_size=128, normalize=norm, source="bench")
        card["weights_sha256"] = weights_sha256(model.state_dict())
        for dev in devices:
            enc = Encoder(model=model.to(dev), card=card, device=torch.device(dev), batch_size=args.batch)
            size = nets.INPUT_SIZE[arch]
            rows.append([arch, f"{size}x{size}", dev, args.batch, round(rate(enc, size, args.batch, args.seconds), 1)])
    for path in args.models:
        enc = load_encoder(path, device="cpu", batch_size=args.batch)
        rows.append([f"{path.name} ({enc.card['arch']})", f"{enc.input_size}x{enc.input_size}", str(enc.device),
                     args.batch, round(rate(enc, enc.input_size, args.batch, args.seconds), 1)])
    print(f"# embed throughput — {machine()}, torch threads {torch.get_num_threads()}")
    print(table(["architecture", "input", "device", "batch", "crops/s"], rows))
    print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
