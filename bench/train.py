"""Training throughput: images/s through `idsvc train` (softmax + center loss, mixed precision on a GPU) for both
architectures, on whatever device is present, beside the same network's bare forward + backward + optimizer step on
random tensors of the same shape (the loop's ceiling on this device) in the same run.

The crop preparation (MTCNN over the photos, cached in the home) is timed apart from the epochs: on a GPU machine it
was half of a short run.

    python bench/train.py [--identities 40] [--per-identity 10] [--steps 20] [--batch 64] [--device auto]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import machine, table
from idsvc.settings import SHARED_DATA, load_settings


def bare_rate(arch: str, batch: int, steps: int, device: torch.device) -> float:
    """Images/s of the bare network: forward, cross-entropy on a linear head, backward, AdamW step."""
    from idsvc.encoders import nets

    model = nets.build(arch, 128).to(device)
    head = torch.nn.Linear(128, 40).to(device)
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    size = nets.INPUT_SIZE[arch]
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 40, (batch,), device=device)
    amp = device.type == "cuda"
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            if amp:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, enabled=amp):
            loss = torch.nn.functional.cross_entropy(head(model(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if amp:
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--per-identity", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--archs", nargs="*", default=["compact", "inception_resnet_v1"])
    args = ap.parse_args()

    from idsvc.devices import resolve_device
    from idsvc.service import Service
    from idsvc.training.config import TrainConfig

    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "celeba"
        for d in sorted((SHARED_DATA / "celeba").iterdir())[:args.identities]:
            (data / d.name).mkdir(parents=True)
            for f in sorted(d.glob("*.jpg"))[:args.per_identity]:
                os.symlink(f, data / d.name / f.name)
        for arch in args.archs:
            home = Path(tmp) / f"home-{arch}"
            svc = Service(load_settings(home=home, device=args.device))
            cfg = TrainConfig(data_dir=data, out=Path(tmp) / f"{arch}.pt", arch=arch, epochs=1000,
                              batch_size=args.batch, max_steps=args.steps, device=args.device, warmup_epochs=0)
            t0 = time.perf_counter()
            card = svc.train(cfg)["card"]
            wall = time.perf_counter() - t0
            rate = card["training"]["images_per_second"] if "training" in card else card.get("images_per_second")
            bare = bare_rate(arch, args.batch, args.steps, device)
            rows.append([arch, str(device), args.batch, args.steps, rate, bare, (rate or 0) / bare, wall])
            shutil.rmtree(home, ignore_errors=True)
    print(f"# idsvc train throughput — {machine()}, torch threads {torch.get_num_threads()}, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"# {args.identities} CelebA identities × ≤{args.per_identity} photos; rate = training images/s (epochs "
          "only); wall = the whole run including crop preparation and the final checkpoint")
    print(table(["arch", "device", "batch", "steps", "idsvc images/s", "bare step images/s", "ratio", "wall s"],
                rows))


if __name__ == "__main__":
    main()
