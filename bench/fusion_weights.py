"""The fusion's member weights chosen by the worst case over the CelebA proxy family, not by CelebA's average on
ordinary photos: for each weight w (FaceNet w, SFace 1 − w) the fused score of a pair is w·s_FaceNet + (1 − w)·s_SFace
(each member L2-normalised, scaled by √weight, concatenated), so every weight is scored from the members' pair scores
bench/accuracy.py wrote (``--json``), with no photo read again.

For each weight: on every proxy the 10-fold accuracy of the fusion minus that of its better member (the rule: never
more than 0.3 points below it), the worst of those margins, and the mean accuracy. The weight with the best worst
margin wins; ties go to the higher mean.

    python bench/accuracy.py .scratch/proxies-dev/celeba/* --json .scratch/dev-after.json
    python bench/fusion_weights.py .scratch/dev-after.json [--weight 0.3]

``--weight`` adds, for that FaceNet weight, the fusion against its better member on each proxy pair by pair: the
pairs only one of them decides right and the exact McNemar p-value (a margin of a few pairs of 1,200 is noise).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.measurement.pairs import read_pairs
from idsvc.measurement.verification import kfold_correct, mcnemar_exact, verification_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="bench/accuracy.py --json output (members' pair scores)")
    ap.add_argument("--proxies", type=Path, default=Path(".scratch/proxies-dev"),
                    help="where the proxies' pairs.txt files are (for labels and folds)")
    ap.add_argument("--weight", type=float, help="FaceNet weight to test pair by pair against the better member")
    args = ap.parse_args()
    results = json.loads(args.results.read_text())
    weights = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    table: dict[float, dict[str, float]] = {float(w): {} for w in weights}
    members: dict[str, float] = {}
    paired: list[str] = []
    for proxy, r in results.items():
        pairs = read_pairs(args.proxies / proxy / "pairs.txt", args.proxies / proxy / "images")
        labels, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
        fn, sf = np.array(r["idsvc-facenet"]["scores"]), np.array(r["idsvc-sface"]["scores"])
        members[proxy] = max(r["idsvc-facenet"]["accuracy"], r["idsvc-sface"]["accuracy"])
        for w in weights:
            table[float(w)][proxy] = verification_report(w * fn + (1 - w) * sf, labels, folds)["accuracy"]
        if args.weight is not None:
            facenet_better = r["idsvc-facenet"]["accuracy"] >= r["idsvc-sface"]["accuracy"]
            better = "idsvc-facenet" if facenet_better else "idsvc-sface"
            fused = kfold_correct(args.weight * fn + (1 - args.weight) * sf, labels, folds)[0]
            member = kfold_correct(fn if facenet_better else sf, labels, folds)[0]
            t = mcnemar_exact(fused, member)
            paired.append(f"{proxy:>28}{better:>15}{(fused.mean() - member.mean()) * 100:>+9.2f}"
                          f"{t['a_only']:>8}{t['b_only']:>8}{t['p_value']:>8.2f}")
    print(f"{'FaceNet weight':>15}{'worst margin':>14}{'(proxy)':>20}{'mean accuracy':>15}")
    ranked = []
    for w, accs in table.items():
        margins = {p: accs[p] - members[p] for p in accs}
        worst = min(margins, key=lambda p: margins[p])
        ranked.append((round(margins[worst], 6), float(np.mean(list(accs.values()))), w))
        print(f"{w:>15.2f}{margins[worst] * 100:>13.2f} {worst:>20}{np.mean(list(accs.values())) * 100:>14.2f}%")
    best = max(ranked)
    if paired:
        print(f"\nFaceNet {args.weight:.2f} against the better member, pair by pair (exact McNemar)")
        print(f"{'proxy':>28}{'better member':>15}{'margin':>9}{'fusion':>8}{'member':>8}{'p':>8}")
        print("\n".join(paired))
    print(f"best worst case: FaceNet {best[2]:.2f} : SFace {1 - best[2]:.2f} (worst margin {best[0] * 100:+.2f} "
          f"points, mean {best[1] * 100:.2f}%)")


if __name__ == "__main__":
    main()
