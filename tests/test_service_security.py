"""Security and bad input: the token, loopback only without one, upload limits, CORS off by default."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from service_support import served, settings_for

from agent.core.errors import ScenewatchError
from agent.service.security import check_exposure, is_loopback

TOKEN = "s3cret-token"


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_only_loopback_addresses_go_without_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("cam.local")
    check_exposure("127.0.0.1", None)
    check_exposure("0.0.0.0", TOKEN)
    with pytest.raises(ScenewatchError, match="SCENEWATCH_API_TOKEN"):
        check_exposure("0.0.0.0", None)


def test_the_token_guards_everything_but_health_and_docs(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", api_token=TOKEN)
    with served(settings) as api:
        assert api.client.get("/healthz").status_code == 200
        assert api.client.get("/openapi.json").status_code == 200
        for path in ("/api/sources", "/api/observations", "/metrics", "/api/stream"):
            refused = api.client.get(path)
            assert refused.status_code == 401 and refused.json() == {"error": "missing or wrong API token"}
        assert api.client.get("/api/sources", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = {"Authorization": f"Bearer {TOKEN}"}
        assert api.client.get("/api/sources", headers=allowed).json() == []
        assert api.client.get("/metrics", headers=allowed).status_code == 200
        api.client.cookies.set("scenewatch_token", TOKEN)  # a browser's EventSource sends the cookie
        assert api.client.get("/api/observations").status_code == 200
        api.client.cookies.clear()
        big = api.client.post("/api/look", files={"image": ("x.png", b"0" * 4096)})
        assert big.status_code == 401  # refused before the upload is read


def test_uploads_must_be_images_within_the_limit(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", api_max_upload_bytes=64 * 1024)
    with served(settings) as api:
        looked = api.client.post("/api/look", files={"image": ("red.png", png())}, data={"prompt": "What?"})
        assert looked.status_code == 200, looked.text
        assert set(looked.json()) >= {"text", "model", "latency_ms", "image_tokens"}
        assert looked.json()["model"] == "scripted"
        text = api.client.post("/api/look", files={"image": ("notes.txt", b"just some text")})
        assert text.status_code == 415 and "not an image" in text.json()["error"]
        empty = api.client.post("/api/look", files={"image": ("none.png", b"")})
        assert empty.status_code == 415
        oversized = api.client.post("/api/look", files={"image": ("big.png", b"\x89PNG" + b"0" * 100_000)})
        assert oversized.status_code == 413
        assert api.client.post("/api/look").status_code == 422  # no file at all
        shot = api.client.post("/api/troubleshoot", files={"image": ("red.png", png())})
        assert shot.status_code == 400 and "knowledge base" in shot.json()["error"]  # none built yet
        assert api.client.get("/readyz").status_code == 200


def bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit PNG: a huge image in a few kilobytes, as a decompression bomb is."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_with_too_many_pixels_are_refused_before_decoding(tmp_path: Path) -> None:
    with served(settings_for(tmp_path / "home")) as api:
        for width, height in ((12000, 9000), (20000, 10000)):  # over scenewatch's limit; over PIL's
            refused = api.client.post("/api/look", files={"image": ("bomb.png", bilevel_png(width, height))})
            assert refused.status_code == 413, refused.text
            assert "too many pixels" in refused.json()["error"] and "megapixels" in refused.json()["error"]
        assert api.client.post("/api/look", files={"image": ("ok.png", png(1, 1))}).status_code == 200


def test_json_bodies_have_their_own_limit_and_cors_is_off_unless_configured(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", api_max_body_bytes=2048)
    with served(settings) as api:
        huge = api.client.post("/api/ask", json={"question": "x" * 5000})
        assert huge.status_code == 413
        asked = api.client.get("/api/sources", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in asked.headers
    open_to = settings_for(tmp_path / "other", api_cors_origins="http://page.example")
    with served(open_to) as api:
        preflight = api.client.options(
            "/api/sources",
            headers={"Origin": "http://page.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "http://page.example"


def test_a_service_whose_model_cannot_load_says_so_and_stops(tmp_path: Path) -> None:
    from agent.service.runtime import Service
    from agent.service.server import ServerThread

    settings = settings_for(tmp_path / "home", model=str(tmp_path / "no-model"), backend="local")
    server = ServerThread(Service(settings))
    with server as url:
        server._thread.join(60)  # it stops by itself
        assert not server._thread.is_alive()
    assert "no-model" in (server.service.failure or "")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)
