"""Compare encoders on LFW View 2 pair by pair: the 10-fold accuracy, AUC, TAR@FAR1e-3 of each, and an exact McNemar
test of every model against every other on the same 6,000 pairs (the same fold protocol for all).

Each model is evaluated through the Service in its own home, so its embedding cache is reused when present:

    python bench/compare_lfw.py --home .scratch/cmp data/models/idsvc-default.pt sface.pt fused.pt
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.jobs.evaluation import evaluate_pairs
from idsvc.measurement.pairs import read_pairs
from idsvc.measurement.verification import kfold_correct, mcnemar_exact, tar_at_far
from idsvc.service import Service
from idsvc.settings import SHARED_DATA, load_settings
from idsvc.storage.embedding_cache import EmbeddingCache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--home", type=Path, required=True, help="homes are made under this folder, one per model")
    ap.add_argument("--lfw", type=Path, default=SHARED_DATA / "lfw")
    args = ap.parse_args()
    pairs = read_pairs(args.lfw / "pairs.txt", args.lfw / "images")
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    correct, rows = {}, []
    for path in args.models:
        svc = Service(load_settings(home=args.home / path.stem, model=path, device="cpu"))
        model = svc.home.model
        cache = EmbeddingCache(svc.settings.cache_dir, model.version, model.pipeline.recipe)
        rep, scores, _ = evaluate_pairs(model.pipeline, pairs, cache)
        correct[path.stem], _ = kfold_correct(scores, labels, folds)
        rows.append((path.stem, model.version, rep["accuracy"], rep["accuracy_std"], rep["auc"], rep["eer"],
                     tar_at_far(scores, labels, 1e-3)))
    print(f"# LFW View 2, 6,000 pairs, 10 folds — {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("model | version | accuracy | AUC | EER | TAR@FAR1e-3")
    print("---|---|---|---|---|---")
    for name, version, acc, std, auc, eer, tar in rows:
        print(f"{name} | {version} | {acc * 100:.2f}% ± {std * 100:.2f} | {auc:.4f} | {eer * 100:.2f}% | "
              f"{tar * 100:.2f}%")
    print("\nexact McNemar | right only by A | right only by B | p")
    print("---|---|---|---")
    for a, b in itertools.combinations(correct, 2):
        t = mcnemar_exact(correct[a], correct[b])
        print(f"{a} vs {b} | {t['a_only']} | {t['b_only']} | {t['p_value']:.3g}")


if __name__ == "__main__":
    main()
