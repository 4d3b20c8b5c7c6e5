"""The OpenAI-compatible backend against a local HTTP server started by the test."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import pytest
from helpers import FakeServer
from PIL import Image

from tools.vision.base import VisionError, VisionRequest
from tools.vision.openai_compat import OpenAICompatBackend


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    yield fake
    fake.close()


def _backend(url: str, **kwargs: object) -> OpenAICompatBackend:
    return OpenAICompatBackend("qwen3-vl", base_url=url, api_key="k", max_side=64, **kwargs)


def test_request_format(server: FakeServer) -> None:
    image = Image.new("RGB", (640, 320), (255, 0, 0))
    result = _backend(server.url).generate([VisionRequest.ask("What is it?", [image], system="S")])[0]
    assert result.text == "a red door"
    assert (result.prompt_tokens, result.output_tokens) == (50, 4)
    body = server.bodies[0]
    assert body["model"] == "qwen3-vl"
    assert body["messages"][0] == {"role": "system", "content": "S"}
    image_part, text_part = body["messages"][1]["content"]
    assert text_part == {"type": "text", "text": "What is it?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert max(sent.size) == 64  # the pixel budget applies before sending
    assert server.headers[0]["Authorization"] == "Bearer k"


def test_batch_sends_one_request_each(server: FakeServer) -> None:
    requests = [VisionRequest.ask(f"q{i}") for i in range(3)]
    results = _backend(server.url).generate(requests)
    assert [r.text for r in results] == ["a red door"] * 3
    assert sorted(b["messages"][0]["content"][0]["text"] for b in server.bodies) == ["q0", "q1", "q2"]


def test_retries_then_succeeds() -> None:
    flaky = FakeServer(fail_first=2)
    try:
        result = _backend(flaky.url, retries=2).generate([VisionRequest.ask("hi")])[0]
        assert result.text == "a red door"
        assert len(flaky.bodies) == 3
    finally:
        flaky.close()


def test_gives_up_after_bounded_retries() -> None:
    down = FakeServer(fail_first=100)
    try:
        with pytest.raises(VisionError, match="HTTP 503"):
            _backend(down.url, retries=1).generate([VisionRequest.ask("hi")])
        assert len(down.bodies) == 2
    finally:
        down.close()


def test_client_error_is_not_retried() -> None:
    bad = FakeServer(fail_first=100, fail_status=400)
    try:
        with pytest.raises(VisionError, match="HTTP 400"):
            _backend(bad.url, retries=3).generate([VisionRequest.ask("hi")])
        assert len(bad.bodies) == 1
    finally:
        bad.close()


def test_unreachable_server_is_a_clear_error() -> None:
    backend = _backend("http://127.0.0.1:9/v1", retries=0, timeout_s=2)
    with pytest.raises(VisionError, match="cannot reach"):
        backend.generate([VisionRequest.ask("hi")])
