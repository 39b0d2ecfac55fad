"""The fusion's member weights chosen by the worst case over the CelebA proxy family, not by CelebA's average on
ordinary photos: for each weight w (FaceNet w, SFace 1 − w) the fused score of a pair is w·s_FaceNet + (1 − w)·s_SFace
(each member L2-normalised, scaled by √weight, concatenated), so every weight is scored from the members' pair scores
bench/accuracy.py wrote (``--json``), with no photo read again.

For each weight: on every proxy the 10-fold accuracy of the fusion minus that of its better member (the rule: never
more than 0.3 points below it), the worst of those margins, and the mean accuracy. The weight with the best worst
margin wins; ties go to the higher mean.

    python bench/accuracy.py .scratch/proxies-dev/celeba/* --json .scratch/dev-after.json
    python bench/fusion_weights.py .scratch/dev-after.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.measurement.pairs import read_pairs
from idsvc.measurement.verification import verification_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="bench/accuracy.py --json output (members' pair scores)")
    ap.add_argument("--proxies", type=Path, default=Path(".scratch/proxies-dev"),
                    help="where the proxies' pairs.txt files are (for labels and folds)")
    args = ap.parse_args()
    results = json.loads(args.results.read_text())
    weights = np.round(np.arange(0.0, 1.0001, 0.05), 2)
    table: dict[float, dict[str, float]] = {float(w): {} for w in weights}
    members: dict[str, float] = {}
    for proxy, r in results.items():
        pairs = read_pairs(args.proxies / proxy / "pairs.txt", args.proxies / proxy / "images")
        labels, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
        fn, sf = np.array(r["idsvc-facenet"]["scores"]), np.array(r["idsvc-sface"]["scores"])
        members[proxy] = max(r["idsvc-facenet"]["accuracy"], r["idsvc-sface"]["accuracy"])
        for w in weights:
            table[float(w)][proxy] = verification_report(w * fn + (1 - w) * sf, labels, folds)["accuracy"]
    print(f"{'FaceNet weight':>15}{'worst margin':>14}{'(proxy)':>20}{'mean accuracy':>15}")
    ranked = []
    for w, accs in table.items():
        margins = {p: accs[p] - members[p] for p in accs}
        worst = min(margins, key=lambda p: margins[p])
        ranked.append((round(margins[worst], 6), float(np.mean(list(accs.values()))), w))
        print(f"{w:>15.2f}{margins[worst] * 100:>13.2f} {worst:>20}{np.mean(list(accs.values())) * 100:>14.2f}%")
    best = max(ranked)
    print(f"best worst case: FaceNet {best[2]:.2f} : SFace {1 - best[2]:.2f} (worst margin {best[0] * 100:+.2f} "
          f"points, mean {best[1] * 100:.2f}%)")


if __name__ == "__main__":
    main()
