"""1:1 verification: are two faces the same person (one pair or a file of pairs), or is this face the enrolled
person ``name``? A match is ``score >= threshold``, the 1:1 threshold (FAR per comparison)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from idsvc.errors import IdsvcError
from idsvc.faces.images import ImageInput, refused, source_name
from idsvc.home import Home
from idsvc.jobs.identities import name_key
from idsvc.jobs.thresholds import resolve_threshold
from idsvc.results import Each, ItemError, VerifyAnswer, VerifyIdentityResult, VerifyItem, VerifyResult

Pair = tuple[ImageInput, ImageInput]


def require_files(*images: ImageInput) -> None:
    """Refuse a missing file before any model loads (a typo should not cost the model's load time).
    Raises ``file_not_found``, ``file_unreadable``."""
    for image in images:
        problem = None if isinstance(image, tuple) else refused(Path(image))
        if problem is not None:
            raise problem


def read_pairs_file(path: Path) -> list[tuple[str, str]]:
    """Two photo paths per line, separated by a tab (or, when there is no tab, by whitespace); blank lines and
    lines starting with # are skipped. Raises ``file_not_found`` and ``invalid_argument`` (naming the line)."""
    if not path.is_file():
        raise IdsvcError("file_not_found", f"{path}: no such file", path=str(path))
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2:
            raise IdsvcError("invalid_argument", f"{path}:{n}: expected two photo paths, found {len(parts)}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise IdsvcError("invalid_argument", f"{path}: no pairs in it")
    missing = [p for pair in pairs for p in pair if not Path(p).is_file()]
    if missing:
        raise IdsvcError("file_not_found", f"{missing[0]}: no such file (named in {path})", path=missing[0])
    return pairs


def verify(home: Home, pairs: Sequence[Pair] | Path, *, threshold: float | None = None,
           aligned: bool = False) -> Each[VerifyAnswer]:
    """The cosine score of each pair's main faces against the threshold (``aligned``: the photos are face crops).
    ``pairs``: (photo, photo) pairs, or a file of them (``read_pairs_file``). Every path is checked at once; a
    photo's own failure is its pair's error."""
    listed: list[Pair] = list(read_pairs_file(pairs)) if isinstance(pairs, Path) else list(pairs)
    require_files(*(image for pair in listed for image in pair))
    return Each(len(listed), _answers(home, listed, threshold, aligned))


def _answers(home: Home, pairs: list[Pair], threshold: float | None, aligned: bool) -> Iterator[VerifyAnswer]:
    thr, source = resolve_threshold(home, threshold)
    for a, b in pairs:
        a_name, b_name = source_name(a), source_name(b)
        try:
            pipeline = home.model.pipeline
            img_a, img_b = pipeline.read(a), pipeline.read(b)  # both decoded before any detection: fails fast
            fa = pipeline.one_face(img_a, strict=False, given_aligned=aligned)
            fb = pipeline.one_face(img_b, strict=False, given_aligned=aligned)
            va, vb = pipeline.embed([fa.aligned, fb.aligned])
        except IdsvcError as exc:
            yield VerifyItem.failure(a_name, b_name, ItemError.of(exc))
            continue
        score = float(va @ vb)
        yield VerifyItem.of(a_name, b_name, VerifyResult(score=round(score, 6), threshold=thr,
                                                         threshold_source=source, same=score >= thr,
                                                         model_version=home.model.version))


def verify_identity(home: Home, image: ImageInput, name: str, *, threshold: float | None = None,
                    aligned: bool = False) -> VerifyIdentityResult:
    """The best score over ``name``'s templates of the active model version. Raises ``identity_not_found`` and
    ``model_mismatch`` (the identity has templates of other model versions only)."""
    require_files(image)
    name = name_key(name)
    thr, source = resolve_threshold(home, threshold)
    version = home.model.version
    vecs, others = home.registry.identity_embeddings(name, version, home.model.dim)
    if not len(vecs):
        raise IdsvcError("model_mismatch", f"{name!r} has no templates for model {version} (only "
                         f"{', '.join(others) or 'none'}); run `idsvc reindex --model`", name=name)
    pipeline = home.model.pipeline
    fc = pipeline.one_face(pipeline.read(image), strict=False, given_aligned=aligned)
    v = pipeline.embed([fc.aligned])[0]
    score = float((vecs @ v).max())
    return VerifyIdentityResult(identity=name, score=round(score, 6), threshold=thr, threshold_source=source,
                                same=score >= thr, model_version=version)
