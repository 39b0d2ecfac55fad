"""The admin side of the CLI: model info/import, eval pairs, keys, db migrations, logging and the exit-3 path,
each through the real CLI on a real home."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from idsvc.settings import DEFAULT_MODEL
from idsvc.storage.registry import head_revision
from tests.conftest import LFW, small_pairs_file

runner = CliRunner()


def idsvc(home: Path, *args: str):
    return runner.invoke(app, ["--home", str(home), *args], catch_exceptions=False)


def test_model_info_of_the_active_and_of_a_named_checkpoint(tmp_path, model_path):
    r = idsvc(tmp_path / "h", "--json", "model", "info")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["active"] and doc["card"]["embedding_size"] == 128 + 128  # FaceNet + SFace
    named = json.loads(idsvc(tmp_path / "h", "--json", "model", "info", str(model_path)).stdout)
    assert not named["active"] and named["card"]["version"] == doc["card"]["version"]
    (tmp_path / "junk.pt").write_text("not a model")
    r = idsvc(tmp_path / "h", "--json", "model", "info", str(tmp_path / "junk.pt"))
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "model_invalid"


def test_model_import_facenet_keras_through_the_cli(tmp_path, facenet_path):
    from idsvc.encoders.load import load_encoder
    from tests.keras_export import export_facenet_keras

    h5 = tmp_path / "facenet_keras.h5"
    export_facenet_keras(load_encoder(facenet_path, device="cpu").model, h5)
    out = tmp_path / "imported.pt"
    r = idsvc(tmp_path / "h", "--json", "model", "import-facenet-keras", str(h5), "-o", str(out), "--fp16")
    assert r.exit_code == 0, r.stderr
    assert out.is_file() and json.loads(r.stdout)["card"]["arch"] == "inception_resnet_v1"
    r = idsvc(tmp_path / "h", "model", "import-facenet-keras", str(tmp_path / "missing.h5"), "-o", str(out))
    assert r.exit_code == 2 and r.stderr.startswith("Error: ")


@pytest.mark.slow  # embeds 80 LFW photos through the CLI: ~4 s on 2 cores
def test_eval_pairs_reports_the_lfw_metrics(tmp_path):
    pairs = small_pairs_file(tmp_path / "pairs.txt", per=2)
    r = idsvc(tmp_path / "h", "--json", "eval", "pairs", "--images", str(LFW), "--pairs", str(pairs))
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pairs"] == 40 and doc["accuracy"] >= 0.9 and 0 <= doc["eer"] <= 0.2 and doc["auc"] > 0.9
    bad = tmp_path / "bad.txt"
    bad.write_text("10 x\n")
    r = idsvc(tmp_path / "h", "--json", "eval", "pairs", "--images", str(LFW), "--pairs", str(bad))
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "invalid_pairs_file"


def test_keys_create_list_revoke(tmp_path):
    home = tmp_path / "h"
    secret = json.loads(idsvc(home, "--json", "keys", "create", "door", "--scope", "write").stdout)["key"]
    keys = json.loads(idsvc(home, "--json", "keys", "list").stdout)["keys"]
    assert [(k["name"], k["scope"], k["revoked_at"]) for k in keys] == [("door", "write", None)]
    assert secret not in json.dumps(keys) and keys[0]["prefix"] == secret[:10]
    r = idsvc(home, "--json", "keys", "create", "door")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "key_exists"
    r = idsvc(home, "--json", "keys", "create", "x", "--scope", "root")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "invalid_argument"
    assert idsvc(home, "keys", "revoke", "door").exit_code == 0
    assert json.loads(idsvc(home, "--json", "keys", "list").stdout)["keys"][0]["revoked_at"]
    r = idsvc(home, "--json", "keys", "revoke", "door")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "key_not_found"


def test_db_downgrade_and_upgrade(tmp_path):
    home = tmp_path / "h"
    r = idsvc(home, "--json", "db", "upgrade")
    assert r.exit_code == 0 and json.loads(r.stdout)["revision"] == head_revision()
    r = idsvc(home, "--json", "db", "downgrade", "base")
    assert r.exit_code == 0 and json.loads(r.stdout)["revision"] == "base"
    tables = {t for (t,) in sqlite3.connect(home / "idsvc.db").execute("select name from sqlite_master "
                                                                        "where type='table'")}
    assert tables <= {"alembic_version", "sqlite_sequence"}  # SQLite keeps its own AUTOINCREMENT table
    r = idsvc(home, "--json", "db", "downgrade", "bogus")
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "invalid_argument"
    assert json.loads(idsvc(home, "--json", "db", "upgrade").stdout)["revision"] == head_revision()


def test_a_home_from_schema_0001_upgrades_keeping_its_templates(service, photos):
    """Templates enrolled before crop landmarks were recorded keep working: the home migrates on open and keeps
    them with no landmarks (their crops are on idsvc's template, which is what no landmarks means)."""
    home = service.settings.home
    n = len(service.enroll("colin", [str(p) for p in photos("lfw", "Colin_Powell", 1, 2, 3)]).accepted)
    assert n >= 2
    service.home.registry.engine.dispose()
    assert json.loads(idsvc(home, "--json", "db", "downgrade", "0001").stdout)["revision"] == "0001"
    listed = json.loads(idsvc(home, "--json", "identities", "list").stdout)
    assert [(i["name"], i["templates"]) for i in listed["identities"]] == [("colin", n)]
    rows = sqlite3.connect(home / "idsvc.db").execute("select crop_landmarks from templates").fetchall()
    assert rows == [(None,)] * n
    r = idsvc(home, "--json", "reindex")
    assert r.exit_code == 0 and json.loads(r.stdout)["vectors"] == n


def test_unreachable_database_is_a_state_error(tmp_path):
    r = idsvc(tmp_path / "h", "--db", "sqlite:////proc/idsvc/x.db", "--json", "identities", "list")
    assert r.exit_code == 5 and json.loads(r.stdout)["error"]["code"] == "database_unavailable"
    r = idsvc(tmp_path / "h", "--db", "notaurl", "--json", "status")
    assert r.exit_code == 5 and json.loads(r.stdout)["error"]["code"] == "invalid_config"
    r = idsvc(tmp_path / "h", "--db", "postgresql+psycopg://u:secret@127.0.0.1:1/x", "--json", "identities", "list")
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 5 and err["code"] in ("database_unavailable", "invalid_config")
    assert "secret" not in r.stdout + r.stderr  # the password is redacted


def test_an_unexpected_failure_is_exit_3_with_one_line(tmp_path, photos):
    """A registry whose tables were dropped behind idsvc's back: not an input error, not a known state; an
    internal error, reported in one line without a traceback."""
    home = tmp_path / "h"
    assert idsvc(home, "identities", "list").exit_code == 0
    con = sqlite3.connect(home / "idsvc.db")
    con.execute("drop table templates")
    con.commit()
    con.close()
    r = idsvc(home, "--json", "identities", "list")
    assert r.exit_code == 3 and json.loads(r.stdout)["error"]["code"] == "internal"
    assert r.stderr.startswith("Error: internal error:") and r.stderr.count("\n") == 1


def test_verbose_logs_counts_and_seconds(tmp_path, photos):
    p = photos("lfw", "Colin_Powell", 1)
    r = idsvc(tmp_path / "h", "-v", "enroll", "colin", str(p[0]))
    assert r.exit_code == 0
    assert "enrolled 1 images into 'colin'" in r.stderr and " s" in r.stderr
    r = idsvc(tmp_path / "h", "identities", "list")  # default level: warnings only
    assert r.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["identities", "--help"], ["keys", "--help"]])
def test_help_exits_0(tmp_path, args):
    r = idsvc(tmp_path / "h", *args)
    assert r.exit_code == 0 and "Usage" in r.stdout


@pytest.mark.parametrize("args", [["identities", "list"], ["keys", "list"], ["thresholds"], ["db", "upgrade"],
                                  ["--version"], ["status"], ["doctor"], ["verify", "/nonexistent.jpg", "b.jpg"],
                                  ["search", "/nonexistent.jpg"], ["identities", "delete", "nobody"]])
def test_admin_commands_load_no_heavy_library(tmp_path, args):
    """House style 18: commands that need no model import neither torch nor faiss nor OpenCV."""
    import subprocess
    import sys

    code = ("import sys\nfrom cli.main import app\n"
            f"try:\n    app({['--home', str(tmp_path / 'h'), *args]!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "print([m for m in ('torch', 'faiss', 'cv2', 'facenet_pytorch') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr


def test_version_names_idsvc_the_model_torch_and_faiss(tmp_path):
    from importlib.metadata import version

    r = idsvc(tmp_path / "h", "--version")
    lines = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert r.exit_code == 0 and lines["idsvc"] == version("idsvc") and lines["torch"] == version("torch")
    card = json.loads(Path(str(DEFAULT_MODEL) + ".card.json").read_text())
    assert lines["model"].startswith(card["version"]) and lines["faiss"] == version("faiss-cpu")


def test_deleting_an_identity_loads_neither_the_model_nor_faiss_and_the_index_follows(service, photos):
    import subprocess
    import sys

    colin = photos("lfw", "Colin_Powell", 1, 2, 3)
    service.enroll("colin", [str(p) for p in colin[:2]])
    service.enroll("bush", [str(p) for p in photos("lfw", "George_W_Bush", 1, 2)])
    home = service.settings.home
    code = ("import sys\nfrom cli.main import app\n"
            f"try:\n    app({['--home', str(home), 'identities', 'delete', 'colin']!r})\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print([m for m in ('torch', 'faiss', 'cv2', 'facenet_pytorch') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout + r.stderr
    st = json.loads(idsvc(home, "--json", "status").stdout)
    assert st["identities"] == 1 and st["index"]["in_agreement"] and st["index"]["vectors"] == st["templates"]
    doc = json.loads(idsvc(home, "--json", "doctor").stdout)
    assert doc["ok"], doc  # the index file is untouched; the tombstones are in its manifest
    r = idsvc(home, "--json", "search", str(colin[2]))
    assert json.loads(r.stdout)["identity"] is None  # colin's vectors are gone from the index
