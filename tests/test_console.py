"""The web console's security (issue 29), against a real server on 127.0.0.1 with real LFW photos, as a browser
would speak to it (cookies, forms, multipart): a hostile identity name is text, a form without the session's CSRF
token or from another site is refused, a read key cannot enroll or delete, a signed-out browser gets nothing but the
sign-in page, a revoked key's session ends, and every console response carries the CSP. The same flows in the real
Chromium are in ``test_console_browser.py``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from idsvc.settings import load_settings
from tests.conftest import LFW, make_keys

HOSTILE = "<img src=x onerror=alert(1)>"


def jpeg(p: Path) -> tuple[str, bytes, str]:
    return (p.name, p.read_bytes(), "image/jpeg")


def signed_in(base: str, key: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with ``key``, and its CSRF token (read from a page, as a form has it)."""
    c = httpx.Client(base_url=base, timeout=120)
    r = c.post("/console/sign-in", data={"key": key, "next": "/console/identities"})
    assert r.status_code == 303 and r.headers["location"] == "/console/identities", r.text
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and key.lower() not in cookie
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/identities").text)
    assert token
    return c, token.group(1)


@pytest.fixture(scope="module")
def console(tmp_path_factory, shared_pipeline) -> dict:
    from idsvc.service import Service
    from tests.conftest import start_server

    home = tmp_path_factory.mktemp("console") / "home"
    s = load_settings(home=home, device="cpu")
    keys = make_keys(home)
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    runner = CliRunner()
    assert runner.invoke(app, ["--home", str(home), "enroll", HOSTILE, str(colin[0])]).exit_code == 0
    base, stop = start_server(s, Service(s, pipeline=shared_pipeline))
    yield {"base": base, "keys": keys, "colin": colin, "home": home}
    stop()


def test_a_hostile_name_is_text_and_every_page_has_the_csp(console) -> None:
    c, _ = signed_in(console["base"], console["keys"]["read"])
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    listing = c.get("/console/identities")
    assert escaped in listing.text and HOSTILE not in listing.text
    page = c.get(f"/console/identities/{httpx.URL(path=HOSTILE).raw_path.decode()}")
    assert page.status_code == 200 and escaped in page.text and HOSTILE not in page.text
    found = c.post("/console/search", data={"csrf": re.search(r'name="csrf" value="([^"]+)"', listing.text)[1]},
                   files={"photo": jpeg(console["colin"][3])})
    assert found.status_code == 200 and escaped in found.text and HOSTILE not in found.text
    assert "<script>" not in found.text and " on" + "error=" not in found.text.replace(escaped, "")
    anonymous = httpx.Client(base_url=console["base"])
    for client, path in [(c, "/console/identities"), (c, "/console/enroll"), (c, "/console/search"),
                         (c, "/console/verify"), (c, "/console/status"), (c, "/console/nowhere"),
                         (anonymous, "/console/sign-in"), (anonymous, "/console/identities"),
                         (anonymous, "/console/static/console.js")]:
        res = client.get(path)
        csp = res.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert res.headers["x-content-type-options"] == "nosniff", path
    assert 'src="/console/static/console.js"' in listing.text and "<script>" not in listing.text  # no inline script


def test_forms_need_the_sessions_csrf_token_and_this_origin(console) -> None:
    c, token = signed_in(console["base"], console["keys"]["write"])
    target = "/console/identities/nobody-yet/rename"
    assert c.post(target, data={"new_name": "x"}).status_code == 403  # no token: a cross-site form cannot know it
    assert c.post(target, data={"new_name": "x", "csrf": "guessed"}).status_code == 403
    other = c.post("/console/enroll", data={"csrf": token, "name": "eve"}, files={"photos": jpeg(console["colin"][5])},
                   headers={"Origin": "https://evil.example"})
    assert other.status_code == 403 and "another site" in other.text
    after = c.get("/console/identities").text
    assert "eve" not in after  # nothing was stored


def test_a_read_key_browses_and_searches_but_cannot_enroll_or_delete(console) -> None:
    c, token = signed_in(console["base"], console["keys"]["read"])
    detail = c.get(f"/console/identities/{httpx.URL(path=HOSTILE).raw_path.decode()}").text
    tid = re.search(r"/console/crops/(\d+)", detail)[1]
    assert 'id="delete-identity"' not in detail and "Delete template" not in detail  # nothing offered
    refused = [
        c.post("/console/enroll", data={"csrf": token, "name": "mallory"}, files={"photos": jpeg(console["colin"][6])}),
        c.post(f"/console/templates/{tid}/delete", data={"csrf": token, "identity_name": HOSTILE}),
        c.post(f"/console/identities/{httpx.URL(path=HOSTILE).raw_path.decode()}/delete",
               data={"csrf": token, "confirm": HOSTILE}),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403], [r.text[-300:] for r in refused]
    assert all("needs a write key" in r.text for r in refused)
    assert c.get(f"/console/crops/{tid}").status_code == 200  # still there


def test_signed_out_or_revoked_gets_only_the_sign_in_page(console) -> None:
    c, token = signed_in(console["base"], console["keys"]["read"])
    tid = re.search(r"/console/crops/(\d+)", c.get("/console/identities").text)[1]
    crop = c.get(f"/console/crops/{tid}")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/png"
    assert crop.headers["cache-control"].startswith("private")
    assert c.post("/console/sign-out", data={"csrf": token}).status_code == 303
    stranger = httpx.Client(base_url=console["base"])
    for client in (c, stranger):
        for path in ("/console/identities", f"/console/crops/{tid}", "/console/status", "/console/search"):
            res = client.get(path)
            assert res.status_code == 303 and res.headers["location"].startswith("/console/sign-in"), path
    assert c.post("/console/sign-in", data={"key": "idsvc_wrong"}).status_code == 401
    # a session whose key is revoked ends at its next request
    home = console["home"]
    made = CliRunner().invoke(app, ["--home", str(home), "--json", "keys", "create", "temp", "--scope", "read"])
    c2, _ = signed_in(console["base"], re.search(r'"key": "([^"]+)"', made.stdout)[1])
    assert CliRunner().invoke(app, ["--home", str(home), "keys", "revoke", "temp"]).exit_code == 0
    res = c2.get("/console/identities")
    assert res.status_code == 303 and res.headers["location"].startswith("/console/sign-in")


def test_wrong_keys_at_sign_in_run_out_per_address(tmp_path, live_server) -> None:
    s = load_settings(home=tmp_path / "home", device="cpu", api_failed_auth_per_minute=5)
    keys = make_keys(s.home)
    c = httpx.Client(base_url=live_server(s), timeout=60)
    codes = [c.post("/console/sign-in", data={"key": f"idsvc_guess{i}"}).status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429], codes
    # out of attempts, even the right key waits: guessing costs the guesser, not the database
    assert c.post("/console/sign-in", data={"key": keys["read"]}).status_code == 429
