"""Fusion ablation (issue 11, item 4): FaceNet alone, SFace alone, their fusion with equal weights, with weights
chosen on CelebA, and a projection head over the fused vector trained on CelebA with the card's loss (softmax +
λ·center, idsvc's own `SoftmaxLoss`, `CenterLoss` and `WeightedSum`), λ swept — scored on LFW, LFW-tight and
LFW-grey-tight with the same 10-fold protocol, and an exact McNemar test of each fusion against the better member.

Every photo is detected and cropped once (idsvc's pipeline, the crops and their landmarks cached under --work), each
member embeds it once, and every fusion is computed from the member embeddings: the fused cosine is exactly the
weighted mean of the member cosines, so no fusion needs its own pass. CelebA is the training set; LFW is never
trained on.

    python bench/lfw_proxies.py --out .scratch/proxies
    python bench/fusion_ablation.py --work .scratch/ablation --proxies .scratch/proxies \\
        --facenet data/models/idsvc-facenet.pt --sface .scratch/sface.pt
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.encoders.load import load_encoder
from idsvc.home.pipeline import Pipeline
from idsvc.measurement.pairs import read_pairs
from idsvc.measurement.verification import kfold_correct, mcnemar_exact, tar_at_far, verification_report
from idsvc.settings import SHARED_DATA, load_settings
from idsvc.training.center_loss import CenterLoss
from idsvc.training.data import list_identities
from idsvc.training.softmax_loss import SoftmaxLoss
from idsvc.training.weighted_sum import WeightedSum

WEIGHTS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # SFace's share of the fusion
LAMBDAS = [0.0, 0.003, 0.01, 0.03]


def cached(path: Path, make) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path) as z:
            return dict(z)
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), **out)
    path.with_suffix(".tmp.npz").replace(path)
    return out


def embeddings(work: Path, what: str, photos: list[Path], pipeline: Pipeline, members: dict) -> dict[str, np.ndarray]:
    """{member name: (N, D) embeddings, "found": (N,) bool} for ``photos``, cached under ``work``."""

    def crops() -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        c, f, lm = pipeline.eval_crops(photos)
        print(f"  {what}: {len(photos)} photos detected and cropped in {time.perf_counter() - t0:.0f} s", flush=True)
        return {"crops": c, "found": f, "landmarks": lm}

    prepared = cached(work / f"{what}-crops.npz", crops)
    out = {"found": prepared["found"]}
    for name, enc in members.items():
        out[name] = embed_rows(work / f"rows-{name}.npz", enc, prepared["crops"], prepared["landmarks"],
                               uses_landmarks=name == "sface", what=what)
    return out


def embed_rows(path: Path, enc, crops: np.ndarray, landmarks: np.ndarray, *, uses_landmarks: bool,
               what: str) -> np.ndarray:
    """One member's embeddings of ``crops``, cached per crop (keyed by the crop's bytes, and its landmarks for a
    member that aligns by them), so a change to how some photos are prepared re-embeds only those."""
    keys = [hashlib.sha256(c.tobytes() + (lm.tobytes() if uses_landmarks else b"")).hexdigest()
            for c, lm in zip(crops, landmarks)]
    store: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as z:
            store = dict(zip(z["keys"].tolist(), z["vectors"]))
    todo = [i for i, k in enumerate(keys) if k not in store]
    if todo:
        t0 = time.perf_counter()
        vecs = enc.embed(crops[todo], landmarks[todo])
        store.update(zip((keys[i] for i in todo), vecs))
        print(f"  {what}: {path.stem} embedded {len(todo)} of {len(keys)} crops in {time.perf_counter() - t0:.0f} s",
              flush=True)
        np.savez(path.with_suffix(".tmp.npz"), keys=np.array(list(store)), vectors=np.stack(list(store.values())))
        path.with_suffix(".tmp.npz").replace(path)
    return np.stack([store[k] for k in keys])


def fuse(e: dict[str, np.ndarray], w_sface: float) -> np.ndarray:
    return np.concatenate([np.sqrt(1 - w_sface) * e["facenet"], np.sqrt(w_sface) * e["sface"]], axis=1)


def train_head(x: np.ndarray, y: np.ndarray, lam: float, dim: int, epochs: int, seed: int = 0) -> torch.nn.Module:
    """A linear projection of the fused vector, trained with softmax + λ·center loss (centres start at class
    means), AdamW with a cosine schedule."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(x.shape[1], dim, bias=False)
    n_cls = int(y.max()) + 1
    loss = WeightedSum({"softmax": (1.0, SoftmaxLoss(dim, n_cls)), "center": (lam, CenterLoss(n_cls, dim, 0.5))})
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    with torch.no_grad():
        loss.terms["center"].init_centers(head(xt), yt)
    opt = torch.optim.AdamW(list(head.parameters()) + list(loss.parameters()), lr=1e-3, weight_decay=5e-4)
    steps = epochs * ((len(x) + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            emb = head(xt[idx])
            total, _ = loss(emb, yt[idx])
            opt.zero_grad()
            total.backward()
            opt.step()
            sched.step()
            loss.terms["center"].update_centers(emb, yt[idx])
    return head.eval()


def project(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.nn.functional.normalize(head(torch.from_numpy(x).float()), dim=1).numpy()


def celeba_pairs(labels: np.ndarray, n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n genuine and n impostor index pairs over CelebA's photos."""
    rng = np.random.default_rng(seed)
    by_id = [np.flatnonzero(labels == k) for k in range(int(labels.max()) + 1)]
    by_id = [ix for ix in by_id if len(ix) >= 2]
    gen = np.array([rng.choice(by_id[rng.integers(len(by_id))], 2, replace=False) for _ in range(n)])
    imp = rng.integers(0, len(labels), (3 * n, 2))
    imp = imp[labels[imp[:, 0]] != labels[imp[:, 1]]][:n]
    return np.concatenate([gen, imp]), np.r_[np.ones(len(gen), bool), np.zeros(len(imp), bool)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="cache folder for crops and member embeddings")
    ap.add_argument("--proxies", type=Path, required=True, help="bench/lfw_proxies.py's --out folder")
    ap.add_argument("--facenet", type=Path, required=True)
    ap.add_argument("--sface", type=Path, required=True)
    ap.add_argument("--celeba", type=Path, default=SHARED_DATA / "celeba")
    ap.add_argument("--per-identity", type=int, default=12, help="CelebA photos per identity (0 = all)")
    ap.add_argument("--head-dim", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    settings = load_settings(home=args.work / "home", device="cpu")
    members = {"facenet": load_encoder(args.facenet, device="cpu"), "sface": load_encoder(args.sface, device="cpu")}
    pipeline = Pipeline(settings, crop_size=160)
    print(f"# {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; members "
          + ", ".join(f"{k} {m.version}" for k, m in members.items()), flush=True)

    sets = {"LFW-tight": args.proxies / "lfw-tight", "LFW-grey-tight": args.proxies / "lfw-grey-tight",
            "LFW": SHARED_DATA / "lfw"}
    scored = {}
    for set_name, root in sets.items():  # the slow part first, each set cached as soon as it is done
        pairs = read_pairs(root / "pairs.txt", root / "images")
        photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
        scored[set_name] = (pairs, photos, embeddings(args.work, set_name.lower(), photos, pipeline, members))

    files, labels, _ = list_identities(args.celeba, 2, 0, args.per_identity)
    cel = embeddings(args.work, f"celeba{args.per_identity}", files, pipeline, members)
    keep = cel["found"]
    cel_pairs, cel_same = celeba_pairs(labels[keep])
    by_w = {}
    for w in WEIGHTS:
        f = fuse({k: cel[k][keep] for k in ("facenet", "sface")}, w)
        s = (f[cel_pairs[:, 0]] * f[cel_pairs[:, 1]]).sum(1)
        by_w[w] = (tar_at_far(s, cel_same, 1e-3), verification_report(s, cel_same, np.arange(len(s)) % 10)["accuracy"])
    print("\nCelebA pairs (6,000 + 6,000) | " + " | ".join(f"w_sface {w}" for w in WEIGHTS))
    print("TAR@FAR1e-3 | " + " | ".join(f"{by_w[w][0] * 100:.2f}%" for w in WEIGHTS))
    print("accuracy | " + " | ".join(f"{by_w[w][1] * 100:.2f}%" for w in WEIGHTS))
    w_best = max(WEIGHTS, key=lambda w: by_w[w])
    print(f"chosen on CelebA (TAR, then accuracy): w_sface = {w_best}", flush=True)

    heads = {}
    x_cel = fuse({k: cel[k][keep] for k in ("facenet", "sface")}, 0.5)
    for lam in LAMBDAS:
        t0 = time.perf_counter()
        heads[lam] = train_head(x_cel, labels[keep], lam, args.head_dim, args.epochs)
        print(f"  head λ={lam}: trained in {time.perf_counter() - t0:.0f} s", flush=True)

    for set_name, (pairs, photos, e) in scored.items():
        where = {p: i for i, p in enumerate(photos)}
        ia, ib = np.array([where[p.a] for p in pairs]), np.array([where[p.b] for p in pairs])
        same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
        vectors = {"FaceNet": e["facenet"], "SFace": e["sface"], "fused 1:1": fuse(e, 0.5),
                   f"fused w_sface={w_best} (CelebA)": fuse(e, w_best)}
        vectors.update({f"head λ={lam}": project(h, fuse(e, 0.5)) for lam, h in heads.items()})
        correct = {}
        print(f"\n## {set_name}: {len(pairs)} pairs, {int((~e['found']).sum())} photos without a face")
        print("model | accuracy | AUC | EER | TAR@FAR1e-3")
        print("---|---|---|---|---")
        for name, v in vectors.items():
            s = (v[ia] * v[ib]).sum(1)
            rep = verification_report(s, same, folds)
            correct[name], _ = kfold_correct(s, same, folds)
            print(f"{name} | {rep['accuracy'] * 100:.2f}% ± {rep['accuracy_std'] * 100:.2f} | {rep['auc']:.4f} | "
                  f"{rep['eer'] * 100:.2f}% | {tar_at_far(s, same, 1e-3) * 100:.2f}%")
        print("\nexact McNemar | right only by A | right only by B | p")
        print("---|---|---|---")
        for a, b in [("FaceNet", "SFace"), ("FaceNet", "fused 1:1"), ("SFace", "fused 1:1"),
                     ("SFace", f"fused w_sface={w_best} (CelebA)"), ("FaceNet", f"fused w_sface={w_best} (CelebA)")]:
            t = mcnemar_exact(correct[a], correct[b])
            print(f"{a} vs {b} | {t['a_only']} | {t['b_only']} | {t['p_value']:.3g}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
