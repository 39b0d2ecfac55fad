"""Labelled pairs of photos for verification: LFW's ``pairs.txt`` read as the benchmark defines it, and pairs drawn
from a folder of identities (every genuine pair, sampled down, and as many seeded impostor pairs), spread over 10
folds, with a hash of what they are so a stored threshold names its data."""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from pathlib import Path

from idsvc.errors import IdsvcError

FOLDS = 10
#: Formats a pairs file's photos may have besides LFW's .jpg (same folder layout and numbering).
OTHER_SUFFIXES = (".png", ".jpeg", ".webp", ".bmp", ".tif", ".pgm", ".ppm")


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def read_pairs(pairs_file: str | Path, images: str | Path) -> list[Pair]:
    """Parse LFW's ``pairs.txt``: a header ``folds n``, then per fold n matched ``name i j`` lines and n mismatched
    ``name1 i name2 j`` lines. Raises ``file_not_found`` / ``invalid_pairs_file``."""
    pf, root = Path(pairs_file), Path(images)
    if not pf.is_file():
        raise IdsvcError("file_not_found", f"{pf}: no such pairs file", path=str(pf))
    try:
        lines = [ln.split() for ln in pf.read_text().splitlines() if ln.strip()]
    except UnicodeDecodeError:
        raise IdsvcError("invalid_pairs_file", f"{pf}: not a text file", path=str(pf)) from None
    try:
        folds, per = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise IdsvcError("invalid_pairs_file", f"{pf}: first line must be '<folds> <pairs per half-fold>'") from None
    body = lines[1:]
    if len(body) != folds * per * 2:
        raise IdsvcError("invalid_pairs_file", f"{pf}: expected {folds * per * 2} pair lines, found {len(body)}")

    def img(name: str, num: str) -> Path:
        if not num.isdigit():
            raise IdsvcError("invalid_pairs_file", f"{pf}: line {i + 2}: photo number {num!r} is not a number",
                             path=str(pf), line=i + 2)
        path = root / name / f"{name}_{int(num):04d}.jpg"
        if path.is_file():
            return path
        # the same layout in another format (a folder of PNGs, say): the first that exists, else the .jpg (missing)
        return next((q for q in (path.with_suffix(s) for s in OTHER_SUFFIXES) if q.is_file()), path)

    pairs = []
    for i, f in enumerate(body):
        fold = i // (2 * per)
        if len(f) == 3:
            pairs.append(Pair(img(f[0], f[1]), img(f[0], f[2]), True, fold))
        elif len(f) == 4:
            pairs.append(Pair(img(f[0], f[1]), img(f[2], f[3]), False, fold))
        else:
            raise IdsvcError("invalid_pairs_file", f"{pf}: line {i + 2} has {len(f)} fields, expected 3 or 4")
    return pairs




@dataclass(frozen=True)
class PairSet:
    pairs: list[Pair]
    source: str           # "pairs_file" or "folder"
    identities: dict[str, list[Path]]  # folder mode only: identity -> photos


def folder_pairs(ids: dict[str, list[Path]], root: Path, max_pairs: int = 3000, seed: int = 0) -> PairSet:
    """All genuine pairs of ``ids`` ({identity: photos}, the folders of ``root``), sampled down to ``max_pairs``, and
    as many seeded impostor pairs as exist, up to the same number, spread over 10 folds. Raises ``invalid_argument``
    and ``not_enough_data``."""
    if max_pairs < 1:
        raise IdsvcError("invalid_argument", f"--max-pairs must be at least 1, not {max_pairs}")
    if len(ids) < 2:
        raise IdsvcError("not_enough_data", f"{root}: need at least two identity folders with photos")
    # seeded sampling of pairs, reproducible on purpose; not a secret
    rng = random.Random(seed)  # nosec B311
    genuine = [(a, b) for files in ids.values() for a, b in itertools.combinations(files, 2)]
    if not genuine:
        raise IdsvcError("not_enough_data", f"{root}: no identity has two photos, so there are no genuine pairs")
    if len(genuine) > max_pairs:
        genuine = rng.sample(genuine, max_pairs)
    impostor = _impostor_pairs(ids, len(genuine), rng)
    pairs = [Pair(a, b, True, 0) for a, b in genuine] + [Pair(a, b, False, 0) for a, b in sorted(impostor)]
    order = list(range(len(pairs)))
    rng.shuffle(order)
    pairs = [Pair(pairs[i].a, pairs[i].b, pairs[i].same, k % FOLDS) for k, i in enumerate(order)]
    return PairSet(pairs, "folder", ids)


def _impostor_pairs(ids: dict[str, list[Path]], wanted: int, rng: random.Random) -> set[tuple[Path, Path]]:
    """Up to ``wanted`` distinct cross-identity pairs. When they are few (an unbalanced folder), all are listed and
    sampled, so the loop never waits for pairs that do not exist; otherwise they are drawn at random."""
    names = list(ids)
    available = sum(len(ids[a]) * len(ids[b]) for a, b in itertools.combinations(names, 2))
    if available <= 4 * wanted:
        every = [(x, y) for a, b in itertools.combinations(names, 2) for x in ids[a] for y in ids[b]]
        return set(rng.sample(every, min(wanted, len(every))))
    impostor: set[tuple[Path, Path]] = set()
    while len(impostor) < wanted:  # at most a quarter of the space is taken, so a draw is new ≥ 75% of the time
        n1, n2 = rng.sample(names, 2)
        impostor.add((rng.choice(ids[n1]), rng.choice(ids[n2])))
    return impostor


def data_hash(pairs: list[Pair], sha_of: dict[Path, str]) -> str:
    h = hashlib.sha256()
    for p in sorted(pairs, key=lambda p: (sha_of[p.a], sha_of[p.b], p.same)):
        h.update(f"{sha_of[p.a]}|{sha_of[p.b]}|{int(p.same)}\n".encode())
    return h.hexdigest()
