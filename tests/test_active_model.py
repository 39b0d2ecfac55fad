"""The home's active model is the one every command uses: after `reindex --model NEW`, calibrate stores NEW's
threshold, verify uses it, and `model info` and `eval` report NEW (the defect of the first release)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import LFW, copy_celeba, permuted_model, small_pairs_file

runner = CliRunner()


def idsvc(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), "--json", *args], catch_exceptions=False)


@pytest.mark.slow  # re-embeds a gallery and calibrates on real photos: ~14 s on 2 cores
def test_upgrade_then_calibrate_then_verify_all_use_the_new_model(service, photos, settings, tmp_path):
    colin = photos("lfw", "Colin_Powell", 1, 2, 3)
    service.enroll("colin", [str(p) for p in colin[:2]])
    old = service.home.model.version
    new_path = tmp_path / "new.pt"
    new = permuted_model(new_path)
    home = settings.home

    r = idsvc(home, "reindex", "--model", str(new_path))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["upgrade"]["to"] == new != old

    folder = copy_celeba(tmp_path / "celeba", 4, 4)
    r = idsvc(home, "calibrate", str(folder), "--mode", "accuracy", "--save")
    assert r.exit_code == 0, r.stderr
    cal = json.loads(r.stdout)
    assert cal["model_version"] == new and cal["saved"]["model_version"] == new

    stored = json.loads(idsvc(home, "thresholds").stdout)["thresholds"]
    assert [t["model_version"] for t in stored] == [new]

    r = idsvc(home, "verify", str(colin[0]), str(colin[2]))
    doc = json.loads(r.stdout)
    assert doc["model_version"] == new and doc["threshold_source"] == "calibrated"
    assert doc["threshold"] == cal["threshold"]

    info = json.loads(idsvc(home, "model", "info").stdout)
    assert info["active"] and info["card"]["version"] == new and Path(info["path"]) == new_path.resolve()

    pairs = small_pairs_file(tmp_path / "pairs.txt", per=1)
    r = idsvc(home, "eval", "pairs", "--images", str(LFW), "--pairs", str(pairs))
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["model_version"] == new

    # An explicit --model still wins over the home's active model.
    r = runner.invoke(app, ["--home", str(home), "--model", str(settings.model), "--json", "model", "info"])
    assert json.loads(r.stdout)["card"]["version"] == old
