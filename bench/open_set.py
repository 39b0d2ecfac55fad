"""Open-set search (1:N) at gallery sizes of 100, 1,000 and 10,000 templates: does a search's threshold, sized for
the gallery from the model card's impostor tail (``IDSVC_SEARCH_FPIR``), keep the share of strangers named as
someone (FPIR) near its target, and how many enrolled people does it then miss (FNIR)? The table in
docs/accuracy.md.

- **Strangers** (non-mated probes): every photo of a fixed half of LFW View 2's people, never enrolled at any size —
  people the tail (measured on CelebA) has never seen.
- **Gallery**: identities drawn from the other half of LFW's people and from CelebA, each with up to ``k`` templates
  (5, as `enroll --each` of five photos, raised only where the pool cannot otherwise fill 10,000), until the gallery
  holds the number of templates asked for; **mated probes**: up to two of each enrolled identity's other photos.
- The threshold is the one ``search`` uses (``idsvc.jobs.thresholds.search_threshold``: the card's tail at the
  target FPIR for this many templates, never below the 1:1 threshold); the fixed 1:1 threshold is shown beside it.

Reads the embeddings bench/impostor_tail.py caches (run it with ``--lfw`` first, same ``--tag``).

    python bench/open_set.py [--fpir 0.01 0.001] [--models idsvc-default idsvc-facenet]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from impostor_tail import MODELS, embeddings

from idsvc.measurement.impostor_tail import search_threshold

SIZES = (100, 1000, 10_000)


def card(name: str) -> dict:
    path = MODELS[name]
    return json.loads(path.with_name(path.name + ".card.json").read_text())


def split(people: dict[str, dict[str, list[int]]], seed: int) -> tuple[list[int], list[tuple[str, list[int]]]]:
    """(stranger photo rows, gallery pool [(identity, its photo rows)]): half of LFW's people are strangers."""
    rng = random.Random(seed)  # nosec B311 - a reproducible split, not a secret
    lfw = sorted(people["lfw"].items())
    rng.shuffle(lfw)
    strangers = [r for _, rows in lfw[: len(lfw) // 2] for r in rows]
    pool = [(n, rows) for n, rows in lfw[len(lfw) // 2:] if len(rows) >= 2]
    pool += [(n, rows) for n, rows in people["celeba"].items() if len(rows) >= 2]
    rng.shuffle(pool)
    return strangers, pool


def gallery(pool: list[tuple[str, list[int]]], size: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """(template rows, their identity, mated probe rows, their identity) for a gallery of ``size`` templates."""
    for k in (5, 10, 20, 40):
        templates, owner, probes, probe_owner = [], [], [], []
        for i, (_, rows) in enumerate(pool):
            take = rows[: min(k, len(rows) - 1, size - len(templates))]
            templates += take
            owner += [i] * len(take)
            rest = rows[len(take):][:2]
            probes += rest
            probe_owner += [i] * len(rest)
            if len(templates) == size:
                return templates, owner, probes, probe_owner
    raise SystemExit(f"the pool cannot fill {size} templates")


def run(model: str, vecs: np.ndarray, strangers: list[int], pool: list[tuple[str, list[int]]],
        fpirs: list[float]) -> list[dict]:
    c = card(model)
    rows = []
    for size in SIZES:
        templates, owner, probes, probe_owner = gallery(pool, size)
        g, own = vecs[templates], np.array(owner)
        best_stranger = (vecs[strangers] @ g.T).max(axis=1)
        s = vecs[probes] @ g.T
        top = s.argmax(axis=1)
        right = own[top] == np.array(probe_owner)
        best_mated = s.max(axis=1)
        identities = len(set(owner))
        for fpir in fpirs:
            sized = search_threshold(c["impostor_tail"], fpir, size)
            t = max(sized["threshold"], c["threshold"])
            rows.append({
                "model": model, "templates": size, "identities": identities, "target_fpir": fpir,
                "threshold": t, "extrapolated": sized["extrapolated"], "strangers": len(strangers),
                "fpir": float((best_stranger >= t).mean()), "false_positives": int((best_stranger >= t).sum()),
                "mated": len(probes), "fnir": float(1 - (right & (best_mated >= t)).mean()),
                "rank1": float(right.mean()), "one_to_one_threshold": c["threshold"],
                "fpir_at_1to1": float((best_stranger >= c["threshold"]).mean()),
                "fnir_at_1to1": float(1 - (right & (best_mated >= c["threshold"])).mean())})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".scratch/embeddings"))
    ap.add_argument("--tag", default="current")
    ap.add_argument("--fpir", nargs="+", type=float, default=[0.01, 0.001])
    ap.add_argument("--models", nargs="+", default=["idsvc-default", "idsvc-facenet"], choices=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    people: dict[str, dict[str, list[int]]] = {}
    vecs: dict[str, list[np.ndarray]] = {}
    offset = 0
    for dataset in ("lfw", "celeba"):
        ids, emb = embeddings(dataset, args.cache, args.tag)
        people[dataset] = {}
        for name, files in ids.items():
            people[dataset][f"{dataset}/{name}"] = list(range(offset, offset + len(files)))
            offset += len(files)
        for m in args.models:
            vecs.setdefault(m, []).append(emb[m])
    strangers, pool = split(people, args.seed)
    out = []
    print(f"{'model':<15}{'templates':>10}{'ids':>6}{'FPIR target':>12}{'threshold':>11}{'FPIR':>16}"
          f"{'FNIR':>8}{'rank-1':>8}   at the 1:1 threshold: FPIR / FNIR")
    for m in args.models:
        for r in run(m, np.concatenate(vecs[m]), strangers, pool, args.fpir):
            out.append(r)
            print(f"{m:<15}{r['templates']:>10,}{r['identities']:>6}{r['target_fpir']:>12g}"
                  f"{r['threshold']:>10.3f}{'*' if r['extrapolated'] else ' '}"
                  f"{r['fpir'] * 100:>8.2f}% ({r['false_positives']:>3})"
                  f"{r['fnir'] * 100:>7.2f}%{r['rank1'] * 100:>7.2f}%   "
                  f"{r['fpir_at_1to1'] * 100:.2f}% / {r['fnir_at_1to1'] * 100:.2f}%", flush=True)
    print(f"{len(strangers)} stranger photos (LFW people never enrolled); * threshold extrapolated beyond the tail")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
