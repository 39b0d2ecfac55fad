"""1:N thresholds that grow with the gallery: a search decides "unknown" at a target FPIR for the gallery it searched,
from the impostor-score tail in the model card (idsvc.measurement.impostor_tail), and says what it assumed."""

from __future__ import annotations

import numpy as np
import pytest

from idsvc.errors import IdsvcError
from idsvc.measurement.impostor_tail import (
    measure_tail,
    mislabelled,
    per_comparison_far,
    search_threshold,
    threshold_at,
)
from tests.conftest import LFW, lfw_people, search_one


def test_the_tail_gives_the_quantiles_it_measured_and_extrapolates_beyond_them():
    rng = np.random.default_rng(0)
    scores = rng.normal(0.0, 0.1, 200_000)  # impostor scores as numbers: the arithmetic, not a face
    tail = measure_tail(scores, source="normal(0, 0.1)", identities=0, photos=0)
    assert [p[0] for p in tail["points"]] == [0.1, 0.01, 0.001, 0.0001]  # 1e-5 would rest on 2 pairs
    for far, t in tail["points"]:
        assert (scores >= t).mean() == pytest.approx(far, rel=0.05)
    t3, extrapolated = threshold_at(tail, 1e-3)
    assert not extrapolated and t3 == pytest.approx(np.quantile(scores, 1 - 1e-3), abs=2e-3)
    # Beyond the last point the exponential fit takes over: higher than the last measured, and (a normal tail
    # falling faster than an exponential) not below the true quantile — the error is on the side of "unknown".
    t6, extrapolated = threshold_at(tail, 1e-6)
    assert extrapolated and t6 > tail["points"][-1][1] and t6 >= 0.1 * 4.753
    with pytest.raises(IdsvcError, match="cannot measure the impostor tail"):
        measure_tail(scores[:500], source="few", identities=0, photos=0)


def test_a_photo_filed_under_the_wrong_identity_is_found_and_lookalikes_are_not():
    # Embeddings as numbers (the arithmetic, not a face): eight identities of six photos, each photo its identity's
    # centre plus noise (same-identity scores ~0.7), identities 0 and 1 look alike (their photos score ~0.45 with
    # each other's), and one photo of identity 3 filed under identity 2.
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((8, 64))
    centres[1] = centres[0] + 0.9 * centres[1]
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.repeat(np.arange(8), 6)
    vecs = centres[owner] + rng.standard_normal((48, 64)) * 0.08
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    owner[3 * 6] = 2
    lookalike = np.median(vecs[:6] @ vecs[6:12].T)
    assert 0.3 < lookalike < np.median(vecs[:6] @ vecs[:6].T)
    found = mislabelled(vecs, owner, threshold=0.3, block=16)  # blocks: a photo's own row is never its evidence
    assert np.flatnonzero(found).tolist() == [3 * 6]
    assert not mislabelled(vecs, np.repeat(np.arange(8), 6), threshold=0.3).any()  # labelled right: nothing


def test_the_threshold_rises_with_the_number_of_templates():
    tail = measure_tail(np.random.default_rng(1).normal(0.0, 0.1, 100_000), source="n", identities=0, photos=0)
    values = [search_threshold(tail, 0.01, n)["threshold"] for n in (1, 10, 100, 1000)]
    assert values == sorted(values) and values[-1] > values[0] + 0.1
    # FPIR = 1 - (1 - FAR)^N holds for the per-comparison rate it asks of the tail.
    assert 1 - (1 - per_comparison_far(0.01, 100)) ** 100 == pytest.approx(0.01)


def test_a_search_sizes_its_threshold_for_the_gallery_and_says_so(service, settings):
    card = service.home.model.card
    assert card["impostor_tail"]["impostor_pairs"] > 10_000_000  # measured on CelebA, shipped in the card
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    service.enroll("colin", [str(colin[0])])
    small = search_one(service, colin[1])
    assert small.identity == "colin" and small.gallery.model_dump() == {"identities": 1, "templates": 1}
    assert small.threshold_source == "model_card" and small.threshold == pytest.approx(card["threshold"])
    people, stored = {"colin"}, 1
    for name, _ in lfw_people(min_photos=4, count=12, offset=5):
        accepted = service.enroll(name, [str(p) for p in sorted((LFW / name).glob("*.jpg"))[:3]]).accepted
        stored += len(accepted)
        people |= {name} if accepted else set()
    big = search_one(service, colin[1])
    assert stored >= 25 and big.gallery.model_dump() == {"identities": len(people), "templates": stored}
    assert big.identity == "colin"
    assert big.threshold_source == "model_card_fpir" and big.threshold > small.threshold
    assert big.target_fpir == settings.search_fpir == 0.01
    fixed = search_one(service, colin[1], threshold=0.5)
    assert fixed.threshold == 0.5 and fixed.threshold_source == "argument" and fixed.target_fpir is None
