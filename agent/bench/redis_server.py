"""A scratch ``redis-server`` (the Debian package) on 127.0.0.1 and a free port, for the scale-out
benchmark and tests: no snapshots, optionally an append-only file, in a folder of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from agent.core.errors import ScenewatchError

START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ScratchRedis:
    """``redis-server --save ''`` in ``folder`` on a free local port, started at once.

    With ``appendonly`` it keeps an append-only file there, so :meth:`restart` (a clean stop, then a
    start on the same port) loses nothing. :meth:`stop` (or leaving the ``with`` block) ends it.
    """

    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise ScenewatchError("redis-server is not installed: apt-get install redis-server (see README)")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def log_path(self) -> Path:
        return self.folder / "redis.log"

    def start(self) -> None:
        """Start the server and wait until it answers a PING."""
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--dir", str(self.folder), "--appendonly", "yes" if self.appendonly else "no"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        self.stop()
                        tail = self.log_path.read_text(errors="replace")[-500:]
                        raise ScenewatchError(f"redis-server did not start: {tail}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM: it writes its append-only file), killing it if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> ScratchRedis:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
