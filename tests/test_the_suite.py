"""The suite's own hygiene (issue 27): what a developer's machine holds must not decide what the tests see."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import TEST_VARIABLES


def test_no_idsvc_variable_but_the_tests_own_reaches_the_tests() -> None:
    """A developer's IDSVC_DB would point the tests at that database; IDSVC_MODEL would change what they measure."""
    assert {k for k in os.environ if k.startswith("IDSVC_")} <= TEST_VARIABLES


def test_the_run_makes_its_own_model_exports(settings) -> None:
    """ONNX exports are cached per user and keyed by the weights only, so a regression in the export code would pass
    on any machine that ran the suite before: the run's cache is its own, fresh."""
    cache = Path(settings.model_cache_dir)
    assert cache.parent.name.startswith("idsvc-test-cache-")
    assert os.environ["XDG_CACHE_HOME"] == str(cache.parent)
