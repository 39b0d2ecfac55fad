"""The real CLI: Typer's CliRunner for exit codes, stderr lines and JSON shapes; a subprocess for SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import CELEBA, SAMPLES

runner = CliRunner()


def idsvc(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args], catch_exceptions=False)


def test_enroll_search_verify_json_and_exit_codes(tmp_path, photos):
    home = tmp_path / "h"
    colin = photos("lfw", "Colin_Powell", 1, 2, 3, 4)
    r = idsvc(home, "--json", "enroll", "colin", str(colin[0]), str(colin[1]), str(colin[2]))
    doc = json.loads(r.stdout)
    assert set(doc) == {"identity", "created", "model_version", "accepted", "rejected", "skipped", "index_behind"}
    assert doc["created"] and doc["accepted"]
    assert r.exit_code == (0 if not doc["rejected"] else 2)

    r = idsvc(home, "--json", "search", str(colin[3]))
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["identity"] == "colin" and doc["threshold_source"] == "model_card"
    assert {"name", "score", "match", "template_id"} <= set(doc["faces"][0]["candidates"][0])

    stranger = photos("lfw", "George_W_Bush", 1)[0]
    r = idsvc(home, "--json", "search", str(stranger))
    assert r.exit_code == 1 and json.loads(r.stdout)["identity"] is None

    assert idsvc(home, "verify", str(colin[3]), "--identity", "colin").exit_code == 0
    assert idsvc(home, "verify", str(colin[3]), str(stranger)).exit_code == 1
    r = idsvc(home, "--json", "verify", str(colin[0]), str(colin[3]))
    assert r.exit_code == 0 and set(json.loads(r.stdout)) >= {"score", "threshold", "threshold_source", "same"}


@pytest.mark.parametrize("args, code, message", [
    (["search", "/no/such.jpg"], 2, "Error: /no/such.jpg: no such file"),
    (["verify", "a.jpg"], 2, "give two photos, a photo and --identity NAME, or --pairs FILE"),
    (["identities", "show", "nobody"], 2, "Error: no identity named 'nobody'"),
    (["identities", "delete", "nobody"], 2, "Error: no identity named 'nobody'"),
])
def test_errors_are_one_line_on_stderr(tmp_path, args, code, message):
    r = idsvc(tmp_path / "h", *args)
    assert r.exit_code == code
    assert message in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("text"), "not an image file"),
    (lambda p: p.write_bytes((SAMPLES / "multiface.jpg").read_bytes()[:5000]), "truncated or corrupt"),
])
def test_bad_image_enroll_exits_2_and_stores_nothing(tmp_path, make, message):
    bad = tmp_path / "bad.jpg"
    make(bad)
    home = tmp_path / "h"
    r = idsvc(home, "--json", "--quiet", "enroll", "x", str(bad))
    assert r.exit_code == 2 and message in r.stderr and r.stderr.count("\n") == 1
    assert json.loads(r.stdout)["accepted"] == []
    # Without --quiet the table goes to stderr too (stdout stays one JSON document); the error is its last line.
    r = idsvc(home, "--json", "enroll", "x", str(bad))
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and "rejected" in r.stderr and lines[-1].startswith("Error: ") and message in lines[-1]
    assert sum(line.startswith("Error: ") for line in lines) == 1 and json.loads(r.stdout)["accepted"] == []
    assert idsvc(home, "--json", "identities", "list").stdout.count('"name"') == 0


def test_group_photo_enroll_is_refused(tmp_path):
    r = idsvc(tmp_path / "h", "enroll", "group", str(SAMPLES / "multiface.jpg"))
    assert r.exit_code == 2 and "6 faces found, expected one" in r.stderr


def test_identities_status_rename_delete(tmp_path, photos):
    home = tmp_path / "h"
    p = photos("lfw", "Colin_Powell", 1, 2, 3)
    idsvc(home, "enroll", "colin", *map(str, p))
    r = idsvc(home, "--json", "identities", "list")
    assert json.loads(r.stdout)["identities"][0]["name"] == "colin"
    assert idsvc(home, "identities", "rename", "colin", "Colin Powell").exit_code == 0
    st = json.loads(idsvc(home, "--json", "status").stdout)
    assert st["identities"] == 1 and st["index"]["in_agreement"]
    assert idsvc(home, "identities", "delete", "Colin Powell").exit_code == 0
    st = json.loads(idsvc(home, "--json", "status").stdout)
    assert st["templates"] == 0 and st["index"]["vectors"] == 0
    r = idsvc(home, "--json", "reindex")
    assert r.exit_code == 0 and json.loads(r.stdout)["vectors"] == 0


def test_settings_errors_name_the_variable_or_the_flag(tmp_path, monkeypatch):
    r = idsvc(tmp_path / "h", "--device", "gpu", "status")  # a bad flag: a usage error
    assert r.exit_code == 2 and r.stderr.startswith("Error: --device:")
    monkeypatch.setenv("IDSVC_BATCH_SIZE", "zero")  # a bad variable: the deployment's configuration
    r = idsvc(tmp_path / "h", "--json", "status")
    assert r.exit_code == 5 and "IDSVC_BATCH_SIZE" in r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "invalid_config"


@pytest.mark.embedded_only
@pytest.mark.slow
def test_sigkill_during_enroll_leaves_a_consistent_store(tmp_path):
    """Kill -9 half-way through a 50-image enroll: status reports agreement, and a re-run completes the job."""
    # CelebA identity 7206 has 60 photos (in-the-wild and aligned crops): 50 real photos of one person.
    src = sorted((CELEBA / "7206").glob("*.jpg"))[:50]
    assert len(src) == 50
    folder = tmp_path / "person_7206"
    folder.mkdir()
    for p in src:
        (folder / p.name).write_bytes(p.read_bytes())
    home = tmp_path / "h"
    db = home / "idsvc.db"
    env = {**os.environ, "IDSVC_HOME": str(home)}
    cmd = [sys.executable, "-m", "cli.main", "-q", "enroll", "person_7206", str(folder)]
    proc = subprocess.Popen(cmd, env=env, cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    crops = home / "crops"
    while time.time() < deadline and proc.poll() is None:
        # Each 16-image batch writes its crops inside its transaction; once the second batch's crops exist, the
        # first batch is committed. Watching the files keeps this test off the database.
        if crops.is_dir() and len(list(crops.glob("*.png"))) >= 17:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"enroll ended (code {proc.returncode}) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = sqlite3.connect(db).execute("select count(*) from templates").fetchone()[0]
    assert 16 <= stored < 50

    # The registry holds every committed batch, each template with its crop; the index (saved at the end of an
    # enroll) lags the registry, which status and doctor call "behind" — a note, not a problem; any search or enroll
    # catches it up. The uncommitted batch's crops are leftovers, which doctor --fix sweeps.
    st = json.loads(idsvc(home, "--json", "status").stdout)
    assert st["templates"] == stored
    doc = json.loads(idsvc(home, "--json", "doctor").stdout)
    assert doc["ok"] and doc["problems"] == []
    assert {x["kind"] for x in doc["leftovers"]} <= {"orphan_crop"}
    assert json.loads(idsvc(home, "--json", "doctor", "--fix").stdout)["leftovers"] == []
    assert len(list(crops.glob("*.png"))) == stored

    r = idsvc(home, "--json", "enroll", "person_7206", str(folder))
    doc = json.loads(r.stdout)
    done = len(doc["accepted"]) + len(doc["skipped"]) + len(doc["rejected"])
    assert done == 50 and len(doc["skipped"]) >= 16
    st = json.loads(idsvc(home, "--json", "status").stdout)
    assert st["templates"] == st["index"]["vectors"] == 50 - len(doc["rejected"])
    assert st["index"]["in_agreement"]


def test_enroll_each_makes_one_identity_per_folder_and_one_name_refuses_many_folders(tmp_path, photos):
    home = tmp_path / "h"
    colin = photos("lfw", "Colin_Powell", 1, 2, 3)
    bush = photos("lfw", "George_W_Bush", 1, 2)
    known = colin[0].parent.parent  # photos/Colin_Powell/, photos/George_W_Bush/
    r = idsvc(home, "--json", "enroll", "people", str(known))
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 2 and err["code"] == "invalid_argument"
    assert "Colin_Powell" in err["message"] and "George_W_Bush" in err["message"] and "--each" in err["message"]
    assert json.loads(idsvc(home, "--json", "identities", "list").stdout)["identities"] == []  # nothing stored

    r = idsvc(home, "--json", "enroll", "--each", str(known))
    doc = json.loads(r.stdout)
    assert r.exit_code == (0 if not doc["rejected"] else 2)
    assert [i["identity"] for i in doc["identities"]] == ["Colin_Powell", "George_W_Bush"]
    assert doc["accepted"] + doc["rejected"] == len(colin) + len(bush) and doc["accepted"] >= 4
    listed = {i["name"]: i["templates"] for i in json.loads(idsvc(home, "--json", "identities", "list").stdout)[
        "identities"]}
    assert listed == {i["identity"]: len(i["accepted"]) for i in doc["identities"]}
    r = idsvc(home, "--json", "search", str(photos("lfw", "George_W_Bush", 3)[0]))
    assert json.loads(r.stdout)["identity"] == "George_W_Bush"

    r = idsvc(home, "--json", "enroll", "everyone", str(known), "--recursive")  # told: one person
    assert r.exit_code in (0, 2) and json.loads(r.stdout)["identity"] == "everyone"


def test_detect_reports_every_face_of_multiface_with_landmarks_and_crops(tmp_path):
    r = idsvc(tmp_path / "h", "--json", "detect", str(SAMPLES / "multiface.jpg"), "--crops", str(tmp_path / "c"))
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["errors"] == 0
    faces = doc["photos"][0]["faces"]
    assert len(faces) >= 4 and doc["faces"] == len(faces)
    for f in faces:
        x1, y1, x2, y2 = f["box"]
        assert len(f["landmarks"]) == 5 and 0 < f["det_prob"] <= 1
        assert all(x1 - 5 <= x <= x2 + 5 and y1 - 5 <= y <= y2 + 5 for x, y in f["landmarks"])  # inside its box
        assert Path(f["crop"]).is_file() and {"score", "preparation"} <= set(f["quality"])
    r = idsvc(tmp_path / "h", "--json", "detect", str(tmp_path / "missing.jpg"))
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "file_not_found"


def test_embed_gives_the_vectors_search_uses(tmp_path, photos):
    import numpy as np

    home = tmp_path / "h"
    colin = photos("lfw", "Colin_Powell", 1, 2)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    out = tmp_path / "e" / "vectors.npy"
    r = idsvc(home, "--json", "embed", str(colin[0]), str(colin[1]), str(junk), "-o", str(out))
    doc = json.loads(r.stdout)
    assert r.exit_code == 2 and doc["rows"] == 2 and [e["path"] for e in doc["errors"]] == [str(junk)]
    vectors, sidecar = np.load(out), json.loads(Path(str(out) + ".json").read_text())
    assert vectors.shape == (2, sidecar["dim"]) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert [p["row"] for p in sidecar["photos"]] == [0, 1, None]
    # The vector search computes for the same photo is the one written.
    idsvc(home, "enroll", "colin", str(colin[0]))
    tid = json.loads(idsvc(home, "--json", "search", str(colin[1])).stdout)["faces"][0]["candidates"][0]
    lines = [json.loads(x) for x in idsvc(home, "embed", "--jsonl", str(colin[0])).stdout.splitlines()]
    assert lines[0]["model_version"] == sidecar["model_version"]
    assert np.allclose(lines[0]["embedding"], vectors[0], atol=1e-6)
    assert abs(float(vectors[0] @ vectors[1]) - tid["score"]) < 1e-4


def test_batch_search_of_a_folder_and_verify_pairs(tmp_path, photos):
    home = tmp_path / "h"
    colin, bush = photos("lfw", "Colin_Powell", 1, 2, 3, 4), photos("lfw", "George_W_Bush", 1, 2, 3)
    idsvc(home, "enroll", "colin", str(colin[0]), str(colin[1]))
    idsvc(home, "enroll", "bush", str(bush[0]), str(bush[1]))
    probes = tmp_path / "probes"
    probes.mkdir()
    blair = photos("lfw", "Tony_Blair", 1)[0]  # not enrolled
    for p in (colin[2], colin[3], bush[2], blair):
        (probes / p.name).write_bytes(p.read_bytes())
    (probes / "broken.jpg").write_bytes(b"not a photo")
    r = idsvc(home, "--json", "search", str(probes))
    doc = json.loads(r.stdout)
    got = {Path(x["path"]).name: x.get("identity", "error") for x in doc["results"]}
    assert got == {colin[2].name: "colin", colin[3].name: "colin", bush[2].name: "bush", blair.name: None,
                   "broken.jpg": "error"}
    assert "error" in next(x for x in doc["results"] if x["path"].endswith("broken.jpg"))
    assert r.exit_code == 2 and doc["summary"] == {"items": 5, "positive": 3, "negative": 1, "errors": 1,
                                                   "exit_code": 2}
    lines = idsvc(home, "search", "--jsonl", str(colin[2]), str(bush[2])).stdout.splitlines()
    assert [json.loads(x)["identity"] for x in lines] == ["colin", "bush"]

    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"# a comment\n{colin[2]}\t{colin[3]}\n{colin[2]}\t{bush[2]}\n")
    r = idsvc(home, "--json", "verify", "--pairs", str(pairs))
    doc = json.loads(r.stdout)
    assert [x["same"] for x in doc["results"]] == [True, False] and r.exit_code == 1
    pairs.write_text(f"{colin[2]}\t{colin[3]}\n")
    assert idsvc(home, "verify", "--pairs", str(pairs)).exit_code == 0
    pairs.write_text(f"{colin[2]}\n")
    r = idsvc(home, "--json", "verify", "--pairs", str(pairs))
    assert r.exit_code == 2 and "expected two photo paths" in json.loads(r.stdout)["error"]["message"]
    r = idsvc(home, "--json", "search", str(colin[2]), str(tmp_path / "missing.jpg"))
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "file_not_found"
