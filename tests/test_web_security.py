"""The page behind a token, without a browser: sign-in redirects, what the cookie looks like, and the
requests another site could make being refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_support import Served, served, settings_for

from agent.service.web.login import local_path
from agent.service.web.render import display_name, short_name

TOKEN = "a-long-token-for-the-tests-0123456789"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Served]:
    with served(settings_for(tmp_path / "home", api_token=TOKEN)) as running:
        yield running


def test_a_page_load_without_the_token_goes_to_the_sign_in_form(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as anonymous:
        page = anonymous.get("/timeline?since=2h", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Ftimeline%3Fsince%3D2h"
        form = anonymous.get(page.headers["location"])
        assert (
            form.status_code == 200
            and 'name="token"' in form.text
            and 'value="/timeline?since=2h"' in form.text
        )
        assert anonymous.get("/static/htmx.min.js").status_code == 200  # no camera data there
        for path, headers in (
            ("/ui/sources", {"Accept": "text/html", "HX-Request": "true"}),  # a fragment: no redirect
            ("/api/sources", {"Accept": "text/html"}),
            ("/", {"Accept": "application/json"}),
        ):
            refused = anonymous.get(path, headers=headers)
            assert refused.status_code == 401 and refused.json() == {"error": "missing or wrong API token"}


def test_signing_in_sets_a_cookie_scripts_cannot_read_and_other_sites_do_not_send(guarded: Served) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as browser:
        wrong = browser.post("/login", data={"token": "guess", "next": "/events"})
        assert wrong.status_code == 401 and "That is not the token" in wrong.text
        assert "scenewatch_token" not in wrong.headers.get("set-cookie", "")
        signed = browser.post("/login", data={"token": TOKEN, "next": "/events"})
        assert signed.status_code == 303 and signed.headers["location"] == "/events"
        cookie = signed.headers["set-cookie"].lower()
        assert cookie.startswith(f"scenewatch_token={TOKEN.lower()};")
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
        events = browser.get("/events", headers={"Accept": "text/html"})
        assert events.status_code == 200 and "<h1>Events</h1>" in events.text
        out = browser.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert browser.get("/events", headers={"Accept": "text/html"}).status_code == 303


def test_requests_from_another_site_are_refused(guarded: Served) -> None:
    client = guarded.client
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    assert client.post("/ui/sources", data={"source": "0"}).status_code == 403  # a plain form: no HX-Request
    foreign = client.post(
        "/ui/sources", data={"source": "0"}, headers={"HX-Request": "true", "Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and "another site" in foreign.json()["error"]
    host = guarded.url.removeprefix("http://")
    proxied = client.post(
        "/ui/sources", data={"source": ""}, headers={"HX-Request": "true", "Origin": f"https://{host}"}
    )
    assert proxied.status_code == 200 and "Name a source" in proxied.text  # same host behind a TLS proxy
    login = client.post("/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"})
    assert login.status_code == 403
    away = client.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert away.status_code == 303 and away.headers["location"] == "/"
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "/ui/sources" not in client.get("/openapi.json").json()["paths"]  # the page is not the API


def test_without_a_token_the_sign_in_form_says_none_is_needed(tmp_path: Path) -> None:
    with served(settings_for(tmp_path / "home")) as running:
        assert "needs no token" in running.client.get("/login?next=/events").text
        assert running.client.post("/login", data={"next": "/events"}).headers["location"] == "/events"
        assert running.client.get("/", headers={"Accept": "text/html"}).status_code == 200


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/timeline?since=1h", "/timeline?since=1h"),
        (None, "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("events", "/"),
    ],
)
def test_sign_in_only_sends_the_browser_to_this_server(target: str | None, safe: str) -> None:
    assert local_path(target) == safe


def test_stream_passwords_are_not_shown() -> None:
    url = "rtsp://admin:s3cret@192.168.1.20:554/stream1"
    assert display_name(url) == "rtsp://admin:***@192.168.1.20:554/stream1"
    assert short_name(url) == "stream1" and short_name("/videos/front door.mp4") == "front door.mp4"
    assert display_name("/videos/a.mp4") == "/videos/a.mp4"
