"""Phone photos (issue 29): a real LFW photo written as HEIC and as AVIF, and stored sideways with an EXIF
orientation tag of 6 (as a phone held upright writes it), enrolls and is found — through the real CLI and a real
server; a truncated HEIC is ``truncated_image`` (one line, exit 2 / HTTP 422), never a 500."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from idsvc.settings import load_settings
from tests.conftest import LFW, make_keys

WRITE = """
import sys
from pathlib import Path
from PIL import Image
from pillow_heif import register_heif_opener
register_heif_opener()
src, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
im = Image.open(src).convert("RGB")
sideways = im.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns these upright
exif = Image.Exif()
exif[0x0112] = 6
im.save(out / "photo.heic", format="HEIF", quality=90)
im.save(out / "photo.avif", format="AVIF", quality=80)
sideways.save(out / "sideways.jpg", format="JPEG", quality=95, exif=exif.tobytes())
sideways.save(out / "sideways.heic", format="HEIF", quality=90, exif=exif.tobytes())
data = (out / "photo.heic").read_bytes()
(out / "truncated.heic").write_bytes(data[: len(data) // 2])
"""


def phone_copies(src: Path, out: Path) -> dict[str, Path]:
    """``src`` as a phone might have written it: HEIC, AVIF, and sideways pixels with EXIF orientation 6 (in the HEIC,
    pillow-heif turns the tag into the container's rotation, as an iPhone writes it). Written by another process, so
    that this one (where the CLI runs) has not registered pillow-heif's opener: idsvc must register it itself."""
    subprocess.run([sys.executable, "-c", WRITE, str(src), str(out)], check=True)
    return {"heic": out / "photo.heic", "avif": out / "photo.avif", "exif6_jpeg": out / "sideways.jpg",
            "exif6_heic": out / "sideways.heic", "truncated": out / "truncated.heic"}


@pytest.fixture(scope="module")
def colin(tmp_path_factory) -> dict[str, Path]:
    photos = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    return {"enroll": phone_copies(photos[0], tmp_path_factory.mktemp("enroll")),
            "probe": phone_copies(photos[5], tmp_path_factory.mktemp("probe"))}


def idsvc(home: Path, *args: str):
    return CliRunner().invoke(app, ["--home", str(home), *args], catch_exceptions=False)


@pytest.mark.slow  # enroll and search through the CLI in subprocesses: ~5 s on 2 cores
def test_the_cli_enrolls_and_finds_heic_avif_and_exif_rotated_photos(tmp_path, colin) -> None:
    home = tmp_path / "home"
    r = idsvc(home, "--json", "enroll", "colin", str(colin["enroll"]["heic"]))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accepted"][0]["quality"]["format"] == "HEIF"
    kinds = ("heic", "avif", "exif6_jpeg", "exif6_heic")
    r = idsvc(home, "--json", "search", *[str(colin["probe"][k]) for k in kinds])
    results = json.loads(r.stdout)["results"]
    assert r.exit_code == 0 and [x["identity"] for x in results] == ["colin"] * 4, r.output
    assert [x["faces"][0]["quality"]["format"] for x in results] == ["HEIF", "AVIF", "JPEG", "HEIF"]
    # a folder of phone photos is read whole: the HEIC and AVIF files are not skipped as "not images"
    r = idsvc(home, "--json", "enroll", "colin-phone", str(colin["enroll"]["heic"].parent))
    doc = json.loads(r.stdout)
    assert {Path(a["path"]).name for a in doc["accepted"]} == {"photo.avif", "sideways.heic", "sideways.jpg"}, doc
    assert {Path(a["path"]).name: a["code"] for a in doc["rejected"]} == {
        "photo.heic": "already_enrolled", "truncated.heic": "truncated_image"}, doc  # read, and known as colin's
    r = idsvc(home, "search", str(colin["probe"]["truncated"]))
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "truncated or corrupt" in r.stderr, r.stderr


def test_the_api_enrolls_and_finds_them(tmp_path, colin, live_server) -> None:
    s = load_settings(home=tmp_path / "home", device="cpu")
    keys = make_keys(s.home)
    base = live_server(s)
    auth = {"Authorization": f"Bearer {keys['write']}"}

    def send(path: str, photo: Path, field: str) -> httpx.Response:
        return httpx.post(f"{base}{path}", headers=auth, timeout=120,
                          files=[(field, (photo.name, photo.read_bytes(), "application/octet-stream"))])

    res = send("/v1/identities/colin/enroll", colin["enroll"]["exif6_heic"], "files")
    assert res.status_code == 200 and res.json()["accepted"][0]["quality"]["format"] == "HEIF", res.text
    for kind in ("heic", "avif", "exif6_jpeg"):
        res = send("/v1/search", colin["probe"][kind], "file")
        assert res.status_code == 200 and res.json()["identity"] == "colin", (kind, res.text)
    res = send("/v1/search", colin["probe"]["truncated"], "file")
    assert res.status_code == 422 and res.json()["code"] == "truncated_image", res.text
    assert "\n" not in res.json()["detail"]
