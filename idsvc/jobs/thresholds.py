"""Which match threshold applies: a per-call override, else ``IDSVC_THRESHOLD``, else the threshold calibrated for
the active model version, else the model card's. Thresholds are data, stored per model version; every result says
which one it used (``threshold_source``). A search (1:N) adds the gallery: its threshold rises with the number of
templates searched (``search_threshold``); verify (1:1) keeps the per-comparison one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.measurement import impostor_tail


def check_threshold(value: float) -> float:
    """A threshold is a finite cosine score in [-1, 1]. Raises ``invalid_argument``."""
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise IdsvcError("invalid_argument", f"threshold must be a cosine score in [-1, 1], not {value}")
    return float(value)


def resolve_threshold(home: Home, override: float | None = None) -> tuple[float, str]:
    """(threshold, source). Raises ``invalid_argument`` for a bad override, ``no_threshold`` when nothing applies."""
    if override is not None:
        return check_threshold(override), "argument"
    if home.settings.threshold is not None:
        return float(home.settings.threshold), "settings"
    stored = home.registry.threshold(home.model.version)
    if stored is not None:
        return float(stored.value), "calibrated"
    card_threshold = home.model.card.get("threshold")
    if card_threshold is not None:
        return float(card_threshold), "model_card"
    raise IdsvcError("no_threshold", f"no match threshold for model {home.model.version}: run "
                     "`idsvc calibrate --save` or pass --threshold")


@dataclass(frozen=True)
class SearchThreshold:
    """A search's threshold, where it came from, and the gallery it was chosen for."""
    value: float
    source: str
    target_fpir: float | None
    identities: int
    templates: int


def search_threshold(home: Home, override: float | None, identities: int, templates: int) -> SearchThreshold:
    """The 1:N threshold for a gallery of ``templates`` templates (``identities`` identities).

    A fixed threshold (the call's, ``IDSVC_THRESHOLD``) is used as it is. Otherwise the threshold keeps searches by
    people not enrolled naming anyone at ``search_fpir`` for this gallery, by the impostor tail calibrated for this
    home (``calibrate --save``) or the model card's — but never below the 1:1 threshold ``verify`` uses, so a
    search never names someone a verification against them would refuse. A model without a tail (an older card,
    a model of one's own) searches at its 1:1 threshold, and says so by its source."""
    fpir = home.settings.search_fpir
    if override is not None or home.settings.threshold is not None:
        value, source = resolve_threshold(home, override)
        return SearchThreshold(value, source, None, identities, templates)
    one_to_one, source = resolve_threshold(home)
    stored = home.registry.threshold(home.model.version)
    tail = (stored.details.get("impostor_tail") if stored is not None else None)
    tail_source = "calibrated_fpir"
    if tail is None:
        tail, tail_source = home.model.card.get("impostor_tail"), "model_card_fpir"
    if tail is None:
        return SearchThreshold(one_to_one, source, fpir, identities, templates)
    value = impostor_tail.search_threshold(tail, fpir, templates)["threshold"]
    if value <= one_to_one:
        return SearchThreshold(one_to_one, source, fpir, identities, templates)
    return SearchThreshold(value, tail_source, fpir, identities, templates)
