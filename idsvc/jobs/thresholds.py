"""Which match threshold applies: a per-call override, else ``IDSVC_THRESHOLD``, else the threshold calibrated for
the active model version, else the model card's. Thresholds are data, stored per model version; every result says
which one it used (``threshold_source``)."""

from __future__ import annotations

import math

from idsvc.errors import IdsvcError
from idsvc.home import Home


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
