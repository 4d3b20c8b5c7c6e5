"""What several test modules share besides fixtures: fixed times, test doubles, an unwritable folder."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tools.vision.base import VisionBackend, VisionRequest, VisionResult
from tools.vision.scripted import Responder, ScriptedBackend

FROZEN_NOW = datetime(2025, 6, 14, 15, 30).timestamp()
"""A fixed local time (a Saturday afternoon) for tests about "today", "10m ago" and dates."""


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder path nothing can be created in, for root too: under a read-only folder, or as root
    under ``/sys`` (sysfs refuses new folders, even root's); skips where /sys takes one."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked / "home"
    place = Path("/sys/scenewatch-test-home")
    try:
        place.mkdir()
    except OSError:
        return place
    place.rmdir()
    pytest.skip("/sys accepts new folders here")


UseBackend = Callable[[VisionBackend], None]
"""The ``use_backend`` fixture: makes every command run the backend it is given."""


def echo_upper(request: VisionRequest) -> str:
    """An answer that proves which request it answers: the prompt in capitals."""
    return request.messages[-1]["content"][-1]["text"].upper()


class SlowBackend(ScriptedBackend):
    """A scripted backend whose every batch takes ``delay`` seconds."""

    def __init__(
        self, delay: float, answers: Iterable[str] | Responder = (), *, default: str | None = None
    ) -> None:
        super().__init__(answers, default=default)
        self.delay = delay

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        time.sleep(self.delay)
        return super().generate(requests)


class BrokenBackend(ScriptedBackend):
    """A backend that fails every batch, as a GPU in trouble does."""

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        raise RuntimeError("CUDA error: device-side assert")


class SilentServer:
    """A server on 127.0.0.1 (a free port) that accepts every connection and never answers.

    Connections are held open, unread, until :meth:`close` (also a context manager).
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self._sock.accept()[0])
            except OSError:  # the accept timed out (checks for the stop), or the socket closed
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.accepted:
            conn.close()
        self._sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeServer:
    """A local OpenAI-compatible server (127.0.0.1, a free port) that answers chat completions with
    ``content``, each after ``delay`` seconds; ``fail_first`` requests get HTTP ``fail_status``."""

    def __init__(
        self,
        fail_first: int = 0,
        fail_status: int = 503,
        *,
        content: str = " a red door ",
        delay: float = 0.0,
    ) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.fail_first = fail_first
        self.fail_status = fail_status
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                server.headers.append(dict(self.headers))
                if len(server.bodies) <= server.fail_first:
                    self.send_response(server.fail_status)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                time.sleep(delay)
                answer = {
                    "model": body["model"],
                    "choices": [{"message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 4},
                }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
