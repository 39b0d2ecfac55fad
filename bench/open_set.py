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
- **The rule on the population it was measured on** (``--holdout``): CelebA's identities, less the photos filed
  under the wrong identity (``mislabelled``, as for the card), split in two at random (``--rounds`` seeds); the
  tail measured on one half exactly as bench/impostor_tail.py measures the card's, a gallery
  of 100 and 1,000 templates (five per identity) from the other half, and every photo of that half's remaining
  identities as strangers — less any identity whose photos score with an enrolled identity's at a median above the
  card's FAR 1e-4 point (typical pairs scoring as one impostor pair in 10,000 does: the same person filed twice,
  CelebA's label noise, not a stranger). FPIR is pooled over the rounds.

Reads the embeddings bench/impostor_tail.py caches (run it with ``--lfw`` first, same ``--tag``).

    python bench/open_set.py --tag zoom [--holdout] [--fpir 0.01 0.001] [--models idsvc-default idsvc-facenet]
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
from impostor_tail import LOWEST_FAR, MODELS, card_of, embeddings

from idsvc.measurement.impostor_tail import impostor_scores, measure_tail, mislabelled, search_threshold, threshold_at

SIZES = (100, 1000, 10_000)


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


def searched(vecs: np.ndarray, templates: list[int], owner: list[int], probes: list[int], probe_owner: list[int],
             strangers: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each stranger's best score, whether each mated probe's best template is its own, each mated probe's best
    score) for a search of the gallery ``templates``."""
    g = vecs[templates]
    s = vecs[probes] @ g.T
    right = np.array(owner)[s.argmax(axis=1)] == np.array(probe_owner)
    return (vecs[strangers] @ g.T).max(axis=1), right, s.max(axis=1)


def run(model: str, vecs: np.ndarray, strangers: list[int], pool: list[tuple[str, list[int]]],
        fpirs: list[float]) -> list[dict]:
    c = card_of(model)
    rows = []
    for size in SIZES:
        templates, owner, probes, probe_owner = gallery(pool, size)
        best_stranger, right, best_mated = searched(vecs, templates, owner, probes, probe_owner, strangers)
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


def same_person(vecs: np.ndarray, a: list[int], b: list[int], threshold: float) -> bool:
    """Two identities whose photos score with each other at a median above ``threshold``: one person filed under
    two names."""
    return bool(np.median(vecs[a] @ vecs[b].T) >= threshold)


def holdout(model: str, vecs: np.ndarray, people: dict[str, list[int]], fpirs: list[float], rounds: int,
            sizes: tuple[int, ...] = (100, 1000), k: int = 5) -> list[dict]:
    """The threshold rule checked within CelebA: tail on one half of the identities, gallery and strangers from the
    other half, ``rounds`` random splits pooled."""
    c = card_of(model)
    duplicate = threshold_at(c["impostor_tail"], 1e-4)[0]
    rows = np.array([r for rs in people.values() for r in rs])  # CelebA less its mislabelled photos, as the card's
    owner = np.array([o for o, rs in enumerate(people.values()) for _ in rs])
    wrong = set(rows[mislabelled(vecs[rows], owner, c["threshold"])].tolist())
    people = {n: kept for n, rs in people.items() if (kept := [r for r in rs if r not in wrong])}
    found: dict[tuple[int, float], list] = {}
    for seed in range(rounds):
        rng = random.Random(seed)  # nosec B311 - a reproducible split, not a secret
        names = sorted(people)
        rng.shuffle(names)
        half_a, half_b = names[: len(names) // 2], names[len(names) // 2:]
        rows_a = [r for n in half_a for r in people[n]]
        owner_a = np.array([i for i, n in enumerate(half_a) for _ in people[n]])
        tail = measure_tail(impostor_scores(vecs[rows_a], owner_a, block=2048), source="half", identities=len(half_a),
                            photos=len(rows_a), lowest_far=LOWEST_FAR)
        for size in sizes:
            enrolled = [n for n in half_b if len(people[n]) > k][: size // k]
            templates = [r for n in enrolled for r in people[n][:k]]
            owner = [i for i in range(len(enrolled)) for _ in range(k)]
            probes = [r for n in enrolled for r in people[n][k:k + 2]]
            probe_owner = [i for i, n in enumerate(enrolled) for _ in people[n][k:k + 2]]
            strangers = [r for n in half_b if n not in enrolled
                         and not any(same_person(vecs, people[n], people[e], duplicate) for e in enrolled)
                         for r in people[n]]
            best_stranger, right, best_mated = searched(vecs, templates, owner, probes, probe_owner, strangers)
            for fpir in fpirs:
                sized = search_threshold(tail, fpir, size)
                t = max(sized["threshold"], c["threshold"])
                found.setdefault((size, fpir), []).append(
                    (int((best_stranger >= t).sum()), len(strangers), int((right & (best_mated >= t)).sum()),
                     len(probes), t, sized["extrapolated"]))
    out = []
    for (size, fpir), runs in sorted(found.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        fp, n, hit, mated = (sum(r[i] for r in runs) for i in range(4))
        out.append({"model": model, "templates": size, "identities": size // k, "target_fpir": fpir,
                    "thresholds": [r[4] for r in runs], "extrapolated": any(r[5] for r in runs), "rounds": rounds,
                    "strangers": n, "false_positives": fp, "fpir": fp / n, "mated": mated, "fnir": 1 - hit / mated})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(".scratch/embeddings"))
    ap.add_argument("--tag", default="current")
    ap.add_argument("--fpir", nargs="+", type=float, default=[0.01, 0.001])
    ap.add_argument("--models", nargs="+", default=["idsvc-default", "idsvc-facenet"], choices=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--holdout", action="store_true", help="also check the rule within CelebA (tail on one half)")
    ap.add_argument("--rounds", type=int, default=5, help="random CelebA splits for --holdout")
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
    if args.holdout:
        celeba = people["celeba"]
        first = min(r for rows in celeba.values() for r in rows)
        local = {n: [r - first for r in rows] for n, rows in celeba.items()}
        print(f"\nWithin CelebA: tail on one half of the identities, gallery and strangers from the other "
              f"({args.rounds} random splits pooled)")
        for m in args.models:
            for r in holdout(m, np.concatenate(vecs[m])[first:], local, args.fpir, args.rounds):
                out.append({**r, "population": "celeba-holdout"})
                print(f"{m:<15}{r['templates']:>10,}{r['identities']:>6}{r['target_fpir']:>12g}"
                      f"{min(r['thresholds']):>7.3f}–{max(r['thresholds']):.3f}{'*' if r['extrapolated'] else ' '}"
                      f"{r['fpir'] * 100:>8.2f}% ({r['false_positives']:>3} of {r['strangers']:,})"
                      f"{r['fnir'] * 100:>7.2f}%", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
