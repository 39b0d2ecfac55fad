"""The web console in the real Debian Chromium (issue 29), driven by Playwright pointed at the system executable
(no browser download), against a real server on 127.0.0.1 with real LFW photos: sign in with a write key, enroll one
person by file upload and another by a folder of people folders (phone photos among them: HEIC, AVIF, a sideways JPEG
with EXIF orientation 6), search a third photo and read the right name with both crops on the page, verify, rename,
delete a template and then the identity, sign out — after which every page and crop URL leads to sign in. A
screenshot of each page goes to ``$IDSVC_ARTIFACTS/console`` (default ``tests/artifacts/console``, git-ignored), and
axe-core, run in each page, finds no serious or critical accessibility violation."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from idsvc.settings import load_settings
from tests.conftest import LFW, make_keys
from tests.test_phone_photos import phone_copies

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("IDSVC_TEST_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(os.environ.get("IDSVC_ARTIFACTS", ROOT / "tests" / "artifacts")) / "console"


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


def accessible(page, name: str) -> None:
    """axe-core in the page: no serious or critical violation (it runs through the DevTools protocol, so the page's
    CSP, which forbids inline script, does not stop it)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, (name, bad)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_gallery_keeper_works_through_the_console_in_chromium(tmp_path: Path, live_server, browser) -> None:
    s = load_settings(home=tmp_path / "home", device="cpu")
    keys = make_keys(s.home)
    base = live_server(s)
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    tony = sorted((LFW / "Tony_Blair").glob("*.jpg"))
    people = tmp_path / "people"
    (people / "Tony_Blair").mkdir(parents=True)
    (people / "George_W_Bush").mkdir(parents=True)
    for p in tony[:2]:
        shutil.copy(p, people / "Tony_Blair" / p.name)
    for p in sorted((LFW / "George_W_Bush").glob("*.jpg"))[:6]:  # 11 photos in all: sent in two chunks
        shutil.copy(p, people / "George_W_Bush" / p.name)
    phone = phone_copies(tony[3], tmp_path / "phone")
    for kind in ("heic", "avif", "exif6_jpeg"):
        shutil.copy(phone[kind], people / "Tony_Blair" / phone[kind].name)
    probes = phone_copies(tony[7], tmp_path / "tony-probes")

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.goto(f"{base}/console")
    assert page.url.startswith(f"{base}/console/sign-in")
    accessible(page, "sign-in")
    shot(page, "01-sign-in")
    page.fill("#key", keys["write"])
    page.click("#sign-in")
    page.wait_for_url(f"{base}/console/identities")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the session is not readable by script
    accessible(page, "identities, empty")

    # one person by photos, one by a folder of people folders (with HEIC, AVIF and EXIF-rotated photos)
    page.click("nav >> text=Enroll")
    page.fill("#name", "Colin Powell")
    page.set_input_files("#photos", [str(p) for p in colin[:3]])
    page.click("#enroll-one")
    page.wait_for_selector("#results[data-done]")
    outcome = page.inner_text("table.outcomes")
    assert page.locator("tr.accepted").count() == 2, outcome  # the third photo has three faces: its reason shows
    assert "multiple_faces" in page.inner_text("tr.rejected") and "3 faces found" in outcome, outcome
    accessible(page, "enroll outcome")
    shot(page, "02-enroll")
    page.goto(f"{base}/console/enroll")
    page.set_input_files("#folder", str(people))
    page.click("#enroll-folder")
    page.wait_for_selector("#results[data-done]")
    assert page.locator("#results tbody tr").count() == 11, page.inner_text("table.outcomes")
    assert "11 photos done" in page.inner_text("#progress-text")
    stored = page.locator("tr.accepted").all_inner_texts()
    tony_rows = [row for row in stored if "Tony_Blair" in row]
    assert len(tony_rows) >= 4 and len(stored) - len(tony_rows) >= 4, page.inner_text("table.outcomes")
    assert any("HEIF" in row for row in tony_rows) and any("AVIF" in row for row in tony_rows), tony_rows

    page.goto(f"{base}/console/identities")
    assert page.locator(".person").count() == 3
    for img in page.locator(".person img").all():
        assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    accessible(page, "identities")
    shot(page, "03-identities")

    # search: the right name, the probe's crop beside the match's crop
    page.click("nav >> text=Search")
    page.set_input_files("#photo", str(colin[5]))
    page.click("#search")
    page.wait_for_selector("#answer")
    assert "Colin Powell" in page.inner_text("#answer")
    assert page.locator("#face-1 svg.crop").count() == 1
    assert page.locator("#face-1 img.candidate-crop").evaluate("i => i.complete && i.naturalWidth > 0")
    assert "threshold" in page.inner_text("main").lower()
    accessible(page, "search")
    shot(page, "04-search")
    for kind in ("heic", "avif", "exif6_jpeg"):  # phone photos of the other person, through the console
        page.goto(f"{base}/console/search")
        page.set_input_files("#photo", str(probes[kind]))
        page.click("#search")
        page.wait_for_selector("#answer")
        assert "Tony_Blair" in page.inner_text("#answer"), (kind, page.inner_text("main")[:500])

    page.click("nav >> text=Verify")
    page.set_input_files("#a", str(colin[6]))
    page.set_input_files("#b", str(colin[7]))
    page.click("#verify")
    page.wait_for_selector("#verdict")
    assert "The same person" in page.inner_text("#verdict")
    accessible(page, "verify")
    shot(page, "05-verify")

    page.click("nav >> text=Status")
    assert page.inner_text("#identities-count") == "3"
    accessible(page, "status")
    shot(page, "06-status")

    # rename, delete a template, delete the identity
    page.goto(f"{base}/console/identities")
    page.click("text=Colin Powell")
    page.fill("#new_name", "Colin L Powell")
    page.click("#rename")
    page.wait_for_selector("#identity-name")
    assert page.inner_text("#identity-name") == "Colin L Powell"
    page.set_input_files("#photos", [str(colin[8])])  # more photos, dropped on the identity's own page
    page.click("#enroll-more")
    page.wait_for_selector("#results[data-done]")
    assert "Colin L Powell" in page.inner_text("#results tbody")
    page.reload()
    accessible(page, "identity")
    shot(page, "07-identity")
    before = page.locator(".template").count()
    page.locator(".template button.danger").first.click()
    page.wait_for_load_state()
    assert page.locator(".template").count() == before - 1 and dialogs and "Delete template" in dialogs[-1]
    page.fill("#confirm", "Colin L Powell")
    page.click("#delete-identity")
    page.wait_for_url(f"{base}/console/identities")
    assert "Colin L Powell" not in page.inner_text("main") and page.locator(".person").count() == 2
    crop_url = page.locator(".person img").first.get_attribute("src")

    page.click("#sign-out")
    page.wait_for_url(f"{base}/console/sign-in")
    for path in ("/console/identities", "/console/enroll", "/console/search", "/console/verify", "/console/status",
                 "/console/identities/Tony_Blair", crop_url):
        page.goto(f"{base}{path}")
        assert page.url.startswith(f"{base}/console/sign-in"), path
