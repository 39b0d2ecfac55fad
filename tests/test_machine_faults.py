"""Faults of the machine, not of the input (issue 27), each as a user meets it: a home that was moved or restored
from a ``cp -a`` backup, a disk that fills up under a write, PostgreSQL going away under a live server, archives
built to hurt (from a real export), and vectors a search cannot use. The outcome is a stable code, never exit 3,
a 500 or a ``text/plain`` body, and nothing reported stored is ever lost.

The disk cases mount small tmpfs file systems (skipped with the reason where ``mount`` is not allowed). Each test
prints a one-line summary (``pytest -s``); ``docs/reliability.md`` quotes them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from idsvc.settings import load_settings
from tests.conftest import LFW, free_port
from tests.postgres import Cluster
from tests.test_reliability_suite import cli, fingerprint

#: Slow tier: each case runs the real CLI in fresh processes, as a script would. They read and edit the SQLite file,
#: the crops and the FAISS folder.
pytestmark = [pytest.mark.slow, pytest.mark.embedded_only]
ROOT = Path(__file__).resolve().parent.parent


#: Photos of each person (1-based, in name order) that enroll with one good face each: several LFW photos show
#: two or three people, and an enroll of them is rightly refused, which is not what these tests are about.
ONE_FACE = {"Colin_Powell": [1, 3, 5, 6, 7, 8], "George_W_Bush": list(range(1, 10)), "Tony_Blair": list(range(1, 15)),
            "Jean_Chretien": list(range(1, 14))}


def lfw(name: str, count: int, into: Path) -> list[Path]:
    """Copies of the first ``count`` one-face LFW photos of a person, under ``into/name``."""
    (into / name).mkdir(parents=True, exist_ok=True)
    files = sorted((LFW / name).glob("*.jpg"))
    out = []
    for n in ONE_FACE[name][:count]:
        out.append(into / name / files[n - 1].name)
        shutil.copy(files[n - 1], out[-1])
    return out


def run(home: Path, *args: str, **kw: Any) -> tuple[int, Any, str]:
    """(exit code, the JSON answer, stderr) of ``idsvc --json ARGS`` in a fresh process, as a script runs it."""
    r = cli(home, "--json", *args, **kw)
    try:
        doc = json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        doc = r.stdout
    return r.returncode, doc, r.stderr


def one_line(stderr: str) -> bool:
    """One ``Error:`` line (under --json, an enroll's table also goes to stderr) and no traceback."""
    return sum(x.startswith("Error: ") for x in stderr.splitlines()) == 1 and "Traceback" not in stderr


def crop_files(home: Path) -> set[str]:
    return {f.name for f in (home / "crops").glob("*")} if (home / "crops").is_dir() else set()


def template_rows(db: Path) -> dict[int, str | None]:
    with sqlite3.connect(db) as con:
        return dict(con.execute("select id, crop_path from templates"))


# -- a home that moves ---------------------------------------------------------------------------------------------
@pytest.fixture
def gallery_home(tmp_path: Path) -> tuple[Path, Path]:
    """A home with Colin Powell (2 photos) and George W Bush (2), enrolled by the CLI; and a probe of each."""
    home, photos = tmp_path / "faces", tmp_path / "photos"
    colin, bush = lfw("Colin_Powell", 3, photos), lfw("George_W_Bush", 3, photos)
    assert run(home, "enroll", "colin", *map(str, colin[:2]))[0] == 0
    assert run(home, "enroll", "bush", *map(str, bush[:2]))[0] == 0
    return home, photos


def test_a_moved_home_and_a_cp_a_backup_keep_every_crop(gallery_home: tuple[Path, Path], tmp_path: Path) -> None:
    home, photos = gallery_home
    assert len(crop_files(home)) == 4
    moved = tmp_path / "faces-2024"
    shutil.move(home, moved)  # mv ~/faces ~/faces-2024
    rc, doc, _ = run(moved, "doctor", "--fix")
    assert rc == 0 and doc["ok"] and not doc["leftovers"] and not doc["problems"], doc
    assert len(crop_files(moved)) == 4
    rc, doc, _ = run(moved, "export", str(tmp_path / "moved.zip"))
    assert rc == 0 and doc["crops"] == 4
    rc, doc, _ = run(moved, "search", str(sorted((photos / "Colin_Powell").iterdir())[2]))
    assert rc == 0 and doc["identity"] == "colin"

    backup = tmp_path / "faces-backup"
    subprocess.run(["cp", "-a", str(moved), str(backup)], check=True)  # noqa: S607 - the tool a user backs up with
    rc, doc, _ = run(backup, "doctor", "--fix")
    assert rc == 0 and doc["ok"] and not doc["leftovers"], doc
    rc, doc, _ = run(backup, "identities", "show", "colin")
    assert all(t["crop_path"].startswith(str(backup)) and Path(t["crop_path"]).is_file()
               for t in doc["template_list"])  # the copy's own crops, not the original's
    assert run(moved, "identities", "delete", "colin")[0] == 0  # the original changes; the copy does not
    rc, doc, _ = run(backup, "doctor", "--fix")
    assert rc == 0 and doc["ok"] and len(crop_files(backup)) == 4
    print("\nmoved home: doctor --fix removed 0 of 4 crops; cp -a backup: removed 0 of 4, its own crops")


def test_a_home_recorded_before_relative_paths_moves_too(gallery_home: tuple[Path, Path], tmp_path: Path) -> None:
    """A registry written before migration 0003 (absolute crop paths) is rewritten on first open, wherever the home
    has gone since."""
    from idsvc.storage.registry import make_engine, migrate

    home, _ = gallery_home
    db = home / "idsvc.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine, "0002", down=True)
    engine.dispose()
    with sqlite3.connect(db) as con:
        con.execute("update templates set crop_path = ? || crop_path", (f"{home}/",))
    assert all(p.startswith("/") for p in template_rows(db).values())
    moved = tmp_path / "elsewhere" / "faces"
    moved.parent.mkdir()
    shutil.move(home, moved)
    rc, doc, _ = run(moved, "doctor", "--fix")
    assert rc == 0 and doc["ok"] and not doc["leftovers"] and not doc["problems"], doc
    assert sorted(template_rows(moved / "idsvc.db").values()) == sorted(f"crops/{f}" for f in crop_files(moved))


def test_doctor_fix_removes_only_old_files_no_template_references(gallery_home: tuple[Path, Path]) -> None:
    home, _ = gallery_home
    kept = crop_files(home)
    orphan, fresh = home / "crops" / "99999.png", home / "crops" / "99998.png"
    shutil.copy(home / "crops" / sorted(kept)[0], orphan)  # a crop of a transaction that never committed
    shutil.copy(home / "crops" / sorted(kept)[0], fresh)
    os.utime(orphan, (time.time() - 3600,) * 2)
    os.utime(fresh, (time.time() + 3600,) * 2)  # written after doctor took the lock: a live writer's, not ours
    rc, doc, _ = run(home, "doctor", "--fix")
    assert rc == 0, doc
    assert any(str(orphan) in line for line in doc["fixed"]), doc["fixed"]  # it says what it removed
    assert crop_files(home) == kept | {fresh.name}


# -- a full disk ---------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """``mount(name, kib)``: a fresh tmpfs of that size under tmp_path; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, kib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],  # noqa: S607
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): the disk-full cases need it")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # noqa: S607


def fill(disk: Path, leave_kib: int) -> Path:
    """Fill ``disk`` until ``leave_kib`` KiB are left; the filler file (delete it to free the space)."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def test_a_disk_that_fills_under_an_enroll(small_disk: Callable[[str, int], Path], tmp_path: Path) -> None:
    """The home on a small disk, filled to leave 0..420 KiB before an enroll of five photos: whatever the moment the
    disk runs out (a crop, the registry's commit, the index), the answer is a stable code and tells the truth about what
    was stored; no crop is left without a template; once space is freed the home is whole and finds who it stored."""
    photos = tmp_path / "photos"
    colin, bush = lfw("Colin_Powell", 1, photos), lfw("George_W_Bush", 6, photos)
    seen: dict[int, str] = {}
    for leave in (0, 64, 200, 260, 290, 296, 300, 420):
        disk = small_disk(f"disk-{leave}", 3072)
        home = disk / "home"
        assert run(home, "enroll", "colin", str(colin[0]))[0] == 0
        before = template_rows(home / "idsvc.db")
        filler = fill(disk, leave)
        rc, doc, err = run(home, "enroll", "bush", *map(str, bush[:5]))
        after = template_rows(home / "idsvc.db")
        new = set(after) - set(before)
        assert rc in (0, 5), (leave, rc, doc, err)
        if "error" in doc:
            assert doc["error"]["code"] == "disk_full" and not new and one_line(err), (leave, doc, err)
            outcome = "disk_full, nothing stored"
        else:
            reported = {a["template_id"] for a in doc["accepted"]}
            assert reported == new, (leave, doc)  # every template it names is stored, and nothing else
            assert rc == 0 or {x["code"] for x in doc["rejected"]} == {"disk_full"}
            outcome = f"{len(new)} stored" + (", index behind" if doc["index_behind"] else "")
        assert crop_files(home) == {Path(p).name for p in after.values()}, leave  # no orphan crop
        filler.unlink()
        rc, doc, _ = run(home, "doctor")
        assert rc == 0 and doc["ok"], (leave, doc)
        if new:
            rc, doc, _ = run(home, "search", str(bush[5]))
            assert rc == 0 and doc["identity"] == "bush", (leave, doc)
        seen[leave] = outcome
    print("\nfull disk, KiB left → outcome: " + "; ".join(f"{k}: {v}" for k, v in seen.items()))
    assert any("nothing stored" in v for v in seen.values()) and any("stored" in v and "nothing" not in v
                                                                     for v in seen.values())


def test_a_full_disk_under_the_registry_leaves_no_crop(small_disk: Callable[[str, int], Path],
                                                       tmp_path: Path) -> None:
    """The database on a full disk, the crops on a roomy one: the crops are written inside the transaction, the
    commit fails, and the crops go with it."""
    disk = small_disk("db-disk", 1024)
    home, db = tmp_path / "home", f"sqlite:///{disk / 'idsvc.db'}"
    photos = lfw("Colin_Powell", 3, tmp_path / "photos")
    assert run(home, "--db", db, "enroll", "colin", str(photos[0]))[0] == 0
    before, crops = fingerprint_db(disk / "idsvc.db"), crop_files(home)
    filler = fill(disk, 0)
    rc, doc, err = run(home, "--db", db, "enroll", "colin", *map(str, photos[1:]))
    assert rc == 5 and doc["error"]["code"] == "disk_full" and one_line(err), (rc, doc, err)
    assert crop_files(home) == crops and fingerprint_db(disk / "idsvc.db") == before
    filler.unlink()
    assert run(home, "--db", db, "enroll", "colin", *map(str, photos[1:]))[0] == 0  # space again: it goes on


def test_an_index_that_cannot_be_saved_after_the_commit(small_disk: Callable[[str, int], Path],
                                                        tmp_path: Path) -> None:
    """The registry commits, the index cannot be written: the answer lists the stored templates, says the index is
    behind (exit 0, a warning), and the next search catches up from the registry."""
    disk = small_disk("index-disk", 1024)
    home = tmp_path / "home"
    photos = tmp_path / "photos"
    colin, bush = lfw("Colin_Powell", 1, photos), lfw("George_W_Bush", 3, photos)
    home.mkdir()
    (home / "index").symlink_to(disk)
    assert run(home, "enroll", "colin", str(colin[0]))[0] == 0
    filler = fill(disk, 0)
    rc, doc, err = run(home, "enroll", "bush", *map(str, bush[:2]))
    assert rc == 0 and doc["index_behind"] and len(doc["accepted"]) == 2, (rc, doc, err)
    assert "index" in err and "Warning:" in err
    assert {a["template_id"] for a in doc["accepted"]} <= set(template_rows(home / "idsvc.db"))
    assert not [f for f in disk.rglob("*.tmp")]  # no half-written temp file on the full disk
    rc, doc, _ = run(home, "search", str(bush[2]))  # still full: served from the registry, in memory
    assert rc == 0 and doc["identity"] == "bush"
    filler.unlink()
    rc, doc, _ = run(home, "doctor", "--fix")
    assert rc == 0 and doc["ok"]


def test_an_enroll_that_fills_the_disk_midway_reports_what_it_stored(tmp_path: Path, small_disk, make_service,
                                                                      settings) -> None:
    """``enroll --each`` of 20 photos (two people): the first 16 are committed, then the crops of the next ones meet
    a full disk. The answer lists the 16 (with their ids), rejects the other 4 as ``disk_full``, exit 5; the
    registry holds exactly those 16 and the disk no crop of the 4."""
    people = tmp_path / "people"
    lfw("Tony_Blair", 10, people)
    lfw("Jean_Chretien", 10, people)
    scratch = make_service(settings).enroll_each([people])  # the same photos' crops, measured in a scratch home
    sizes = [settings.crops_dir.joinpath(f"{a.template_id}.png").stat().st_size
             for r in scratch.identities for a in r.accepted]
    assert len(sizes) == 20
    disk = small_disk("crops-disk", 4096)
    home = tmp_path / "target"
    home.mkdir()
    (home / "crops").symlink_to(disk)
    page = 4096
    fill(disk, (sum(-(-n // page) * page for n in sizes[:16]) + page) // 1024)  # the first 16 crops, not one more
    rc, doc, err = run(home, "enroll", "--each", str(people))
    stored = set(template_rows(home / "idsvc.db"))
    assert rc == 5 and one_line(err), (rc, doc, err)
    listed = {a["template_id"] for r in doc["identities"] for a in r["accepted"]}
    assert listed == stored and len(stored) == 16, doc
    rejected = [x for r in doc["identities"] for x in r["rejected"]]
    assert {x["code"] for x in rejected} == {"disk_full"} and len(rejected) == 4
    assert crop_files(home) == {f"{i}.png" for i in stored} | {"filler"}
    print(f"\nenroll --each of 20 on a disk with room for 16 crops: exit {rc}, 16 stored and listed, 4 disk_full")


def fingerprint_db(db: Path) -> str:
    h = hashlib.sha256()
    with sqlite3.connect(db) as con:
        for line in con.iterdump():
            h.update(line.encode())
    return h.hexdigest()


def test_a_full_disk_over_http_is_507_and_stores_nothing(small_disk, live_server, tmp_path: Path) -> None:
    disk = small_disk("api-disk", 1024)
    s = load_settings(home=tmp_path / "home", db=f"sqlite:///{disk / 'idsvc.db'}", device="cpu")
    secret = _key(s, "write")  # keys live in the registry: made before the disk fills
    base = live_server(s)
    fill(disk, 0)
    photo = lfw("Colin_Powell", 1, tmp_path / "photos")[0]
    r = httpx.post(f"{base}/v1/identities/colin/enroll", headers={"Authorization": f"Bearer {secret}"},
                   files=[("files", (photo.name, photo.read_bytes(), "image/jpeg"))], timeout=120)
    assert r.status_code == 507 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["code"] == "disk_full" and r.json()["request_id"]
    assert not crop_files(s.home)


def _key(s: Any, scope: str) -> str:
    from idsvc.service import Service

    svc = Service(s)
    try:
        return svc.create_key(f"{scope}-key", scope).key
    finally:
        svc.close()


# -- PostgreSQL goes away under a live server ------------------------------------------------------------------------
def test_postgres_stopped_under_a_live_server_is_503_and_it_recovers(tmp_path: Path, live_server) -> None:
    cluster = Cluster(free_port()).start()
    try:
        s = load_settings(home=tmp_path / "home", db=cluster.new_database(), device="cpu")
        secrets = {sc: _key(s, sc) for sc in ("read", "write")}
        base = live_server(s)
        client = httpx.Client(base_url=base, timeout=120)
        photos = lfw("Colin_Powell", 3, tmp_path / "photos")
        w = {"Authorization": f"Bearer {secrets['write']}"}
        r = {"Authorization": f"Bearer {secrets['read']}"}
        up = client.post("/v1/identities/colin/enroll", headers=w,
                         files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[:2]])
        assert up.status_code in (200, 201), up.text
        cluster.halt()
        answers = [client.get("/v1/identities", headers=r),
                   client.post("/v1/search", headers=r, files=[("file", (photos[2].name, photos[2].read_bytes(),
                                                                         "image/jpeg"))]),
                   client.post("/v1/identities/colin/enroll", headers=w,
                               files=[("files", (photos[2].name, photos[2].read_bytes(), "image/jpeg"))]),
                   client.get("/v1/status", headers=r)]
        for a in answers:
            assert a.status_code == 503, (a.request.url, a.status_code, a.text)
            assert a.headers["content-type"] == "application/problem+json", a.text
            assert a.json()["code"] == "database_unavailable" and a.headers["retry-after"] and a.json()["request_id"]
        assert client.get("/v1/ready").status_code == 503
        cluster.resume()
        deadline, back = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            back = client.get("/v1/identities", headers=r)
            if back.status_code == 200:
                break
            time.sleep(0.5)
        assert back is not None and back.status_code == 200 and back.json()["identities"][0]["templates"] == 2
        found = client.post("/v1/search", headers=r, files=[("file", (photos[2].name, photos[2].read_bytes(),
                                                                      "image/jpeg"))])
        assert found.status_code == 200 and found.json()["identity"] == "colin", found.text
        print(f"\nPostgreSQL stopped: {len(answers)} requests answered 503 database_unavailable problem+json "
              "with Retry-After; 200 again once it was back")
    finally:
        cluster.stop()


# -- hostile archives ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export of a home with two people."""
    root = tmp_path_factory.mktemp("export")
    photos = root / "photos"
    home = root / "home"
    assert run(home, "enroll", "colin", *map(str, lfw("Colin_Powell", 2, photos)))[0] == 0
    assert run(home, "enroll", "bush", *map(str, lfw("George_W_Bush", 2, photos)))[0] == 0
    assert run(home, "export", str(root / "gallery.zip"))[0] == 0
    return root / "gallery.zip"


def rebuilt(src: Path, dst: Path, change: Callable[[dict[str, bytes]], None],
            big: tuple[str, int] | None = None) -> Path:
    """``src`` with its members changed by ``change(members)`` and the manifest's checksums and sizes recomputed, as
    an attacker who read the format would; ``big`` = (member, bytes of zeros) streamed in, not held in memory."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist() if n != "manifest.json"}
        manifest = json.loads(z.read("manifest.json"))
    change(members)
    manifest["sha256"] = {n: hashlib.sha256(d).hexdigest() for n, d in members.items()
                          if n in manifest["sha256"] or n.startswith("crops/")}
    manifest["sizes"] = {n: len(members[n]) for n in manifest["sha256"]}
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in members.items():
            z.writestr(n, d)
        if big is not None:
            name, size = big
            h = hashlib.sha256()
            zeros = b"\0" * (1 << 24)
            with z.open(name, "w", force_zip64=True) as fh:
                for _ in range(size // len(zeros)):
                    fh.write(zeros)
                    h.update(zeros)
            manifest["sha256"][name], manifest["sizes"][name] = h.hexdigest(), size
        z.writestr("manifest.json", json.dumps(manifest))
    return dst


def _templates(members: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(x) for x in members["templates.jsonl"].decode().splitlines() if x.strip()]


def _set_templates(members: dict[str, bytes], rows: list[dict[str, Any]]) -> None:
    members["templates.jsonl"] = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def _first_template(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, bytes]], None]:
    def change(members: dict[str, bytes]) -> None:
        rows = _templates(members)
        edit(rows[0])
        _set_templates(members, rows)

    return change


def _vector(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


HOSTILE: dict[str, Callable[[dict[str, bytes]], None]] = {
    "a crop reference to a missing member": _first_template(lambda r: r.update(crop="crops/424242.png")),
    "an embedding of the wrong length": _first_template(lambda r: r.update(embedding=_vector(np.ones(100) / 10))),
    "an embedding of NaNs": _first_template(lambda r: r.update(embedding=_vector(np.full(512, np.nan)))),
    "an embedding that is not unit norm": _first_template(
        lambda r: r.update(embedding=_vector(2 * np.frombuffer(base64.b64decode(r["embedding"]), "<f4")))),
    "a template of an identity the archive lacks": _first_template(lambda r: r.update(identity="nobody")),
    "a template whose fields are missing": _first_template(lambda r: r.pop("image_sha256")),
    "an identity name that is not one": lambda m: m.update(identities_json=b"") or m.update(
        {"identities.json": json.dumps([{"name": "../../etc", "metadata": {}}]).encode()}),
    "a threshold that is not a number": lambda m: m.update(
        {"thresholds.json": json.dumps([{"model_version": "x", "target_far": "NaN", "threshold": None}]).encode()}),
}


@pytest.fixture
def importing_home(tmp_path: Path) -> Path:
    home = tmp_path / "dst"
    assert run(home, "enroll", "tony", *map(str, lfw("Tony_Blair", 1, tmp_path / "photos")))[0] == 0
    return home


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_and_the_home_is_unchanged(case: str, export: Path, importing_home: Path,
                                                                tmp_path: Path) -> None:
    def change(members: dict[str, bytes]) -> None:
        HOSTILE[case](members)
        members.pop("identities_json", None)

    bad = rebuilt(export, tmp_path / "bad.zip", change)
    before = fingerprint(importing_home)
    rc, doc, err = run(importing_home, "import", str(bad))
    assert rc == 2 and doc["error"]["code"] == "archive_invalid" and one_line(err), (case, rc, doc, err)
    assert fingerprint(importing_home) == before, case


def test_unlisted_members_are_ignored_and_nothing_lands_outside_the_home(export: Path, importing_home: Path,
                                                                          tmp_path: Path) -> None:
    bad = tmp_path / "extra.zip"
    shutil.copy(export, bad)
    with zipfile.ZipFile(bad, "a") as z:
        z.writestr("../../escaped.txt", b"x")
        z.writestr("crops/../../../escaped.png", b"x")
    rc, doc, _ = run(importing_home, "import", str(bad))
    assert rc == 0 and doc["templates"] == 4
    assert not list(tmp_path.rglob("escaped*"))


def test_a_decompression_bomb_is_refused_before_it_is_inflated(export: Path, importing_home: Path,
                                                                tmp_path: Path) -> None:
    """A crop that inflates to 2 GiB of zeros (a few MB on disk), its checksum and size honest in the manifest: refused
    from the zip headers, with the importing process's peak memory near an ordinary import's."""
    def one_crop_to_bomb(members: dict[str, bytes]) -> None:
        rows = _templates(members)
        del members[rows[0]["crop"]]
        rows[0]["crop"] = "crops/bomb.png"
        _set_templates(members, rows)

    bomb = rebuilt(export, tmp_path / "bomb.zip", one_crop_to_bomb, big=("crops/bomb.png", 2 << 30))
    before = fingerprint(importing_home)
    peak_bomb, (rc, doc) = _peak_rss(importing_home, "import", str(bomb))
    assert rc == 2 and doc["error"]["code"] == "archive_invalid" and "bomb.png" in doc["error"]["message"], doc
    assert fingerprint(importing_home) == before
    peak_real, (rc, _) = _peak_rss(tmp_path / "fresh", "import", str(export))
    assert rc == 0
    assert peak_bomb < peak_real + 64 << 20, (peak_bomb, peak_real)
    print(f"\nzip bomb ({bomb.stat().st_size / 1e6:.1f} MB → 2 GiB): refused, peak RSS {peak_bomb / 2**20:.0f} MiB "
          f"(a real import: {peak_real / 2**20:.0f} MiB); home unchanged")


def _peak_rss(home: Path, *args: str) -> tuple[int, tuple[int, Any]]:
    """(peak resident bytes of the CLI process, (exit code, JSON answer)). The peak is the kernel's ``VmHWM`` of the
    process's own memory (``ru_maxrss`` would carry over the forking test process's, across ``exec``)."""
    code = ("import re, sys\nfrom cli.main import run\nsys.argv = ['idsvc', *sys.argv[1:]]\ntry:\n    run()\n"
            "except SystemExit as e:\n    rc = e.code or 0\nelse:\n    rc = 0\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
            "print('peak', hwm, rc, file=sys.stderr)\n")
    env = {**os.environ, "IDSVC_HOME": str(home), "IDSVC_DEVICE": "cpu"}
    r = subprocess.run([sys.executable, "-c", code, "--json", *args], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    _, kib, rc = next(x for x in r.stderr.splitlines() if x.startswith("peak ")).split()
    return int(kib) * 1024, (int(rc), json.loads(r.stdout))


# -- vectors a search cannot use -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["nan", "short"])
def test_a_stored_vector_search_cannot_use_is_found_and_mended(bad: str, gallery_home: tuple[Path, Path]) -> None:
    home, photos = gallery_home
    db = home / "idsvc.db"
    with sqlite3.connect(db) as con:
        (tid,) = con.execute("select min(t.id) from templates t join identities i on i.id = t.identity_id "
                             "where i.name = 'colin'").fetchone()
        vec = np.full(512, np.nan, "<f4") if bad == "nan" else np.ones(100, "<f4") / 10
        con.execute("update templates set embedding = ?, dim = ? where id = ?", (vec.tobytes(), len(vec), tid))
    shutil.rmtree(home / "index")  # the next search rebuilds from the registry, and meets the vector
    probe = sorted((photos / "Colin_Powell").iterdir())[2]
    for args in (("search", str(probe)), ("verify", str(probe), "--identity", "colin"), ("enroll", "bush",
                                                                                         str(probe))):
        rc, doc, err = run(home, *args)
        assert rc == 5 and doc["error"]["code"] == "vectors_invalid" and one_line(err), (args, rc, doc, err)
    rc, doc, _ = run(home, "doctor")
    found = {p["check"]: p for p in doc["problems"]}
    assert rc == 1 and tid in found["vectors"]["ids"], doc  # (and the index folder removed above)
    rc, doc, _ = run(home, "doctor", "--fix")
    assert rc == 0 and doc["ok"] and any("re-embedded" in line for line in doc["fixed"]), doc
    rc, doc, _ = run(home, "verify", str(probe), "--identity", "colin")
    assert rc == 0 and doc["same"], doc
    rc, doc, _ = run(home, "search", str(probe))
    assert rc == 0 and doc["identity"] == "colin"
