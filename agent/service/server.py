"""uvicorn in this process: ``scenewatch serve`` in the main thread, tests and benchmarks in a thread.

Shutdown, on SIGTERM or Ctrl-C: the live streams end at once (:attr:`stopping`), uvicorn stops
listening and gives open requests ``api_shutdown_grace_s`` to finish, then the app's lifespan
closes the service (sources stopped, answers in flight committed, store closed). A second signal
abandons the answers in flight. uvicorn raises the signal again after its own shutdown, with the
handler that was there before it started: :func:`serve` installs quiet handlers first, so the
process ends with its own status instead of dying by the signal.

sse-starlette (which the MCP SDK uses) sets a process-wide exit flag on any server's shutdown and
never clears it; every server here clears it when it starts, so a later server in the same
process (tests, the benchmark) streams normally.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from types import FrameType

import uvicorn

from agent.core.errors import ScenewatchError
from agent.service.app import create_app
from agent.service.runtime import Service

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free one); ScenewatchError when it cannot.

    Bound before anything loads: a port in use is a one-line error, and the address is known.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn serves them
    except OSError as exc:
        sock.close()
        raise ScenewatchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _clear_sse_starlette_exit() -> None:
    module = sys.modules.get("sse_starlette.sse")
    if module is not None:
        module.AppStatus.should_exit = False


class ServiceServer(uvicorn.Server):
    """uvicorn for a :class:`Service`: a first exit signal ends the streams, a second hurries."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.app = create_app(service)
        settings = service.settings
        super().__init__(
            uvicorn.Config(
                self.app,
                lifespan="on",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=max(1, round(settings.api_shutdown_grace_s)),
            )
        )
        self.signals: list[int] = []
        service.on_failure = lambda _message: self.stop()

    def stop(self) -> None:
        """End the streams and stop serving (from any thread)."""
        self.app.state.stopping.set()
        self.service.commits.notify()
        self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        if len(self.signals) > 1:
            log.info("stopping sooner: abandoning the frames the model has not answered")
            self.service.hurry()
        else:
            log.info("stopping: answering what is in flight (Ctrl-C again to stop sooner)")
        self.app.state.stopping.set()
        self.service.commits.notify()
        super().handle_exit(sig, frame)

    def run_on(self, sock: socket.socket) -> None:
        _clear_sse_starlette_exit()
        self.run(sockets=[sock])


def serve(service: Service, sock: socket.socket) -> int:
    """Serve until SIGTERM or Ctrl-C; the exit status: 0, 130 after Ctrl-C.

    ScenewatchError when the service could not start (the model did not load). The quiet signal
    handlers stay once it returns: the caller ends the process at once
    (:func:`agent.cli.common.exit_now`), so a second Ctrl-C never meets Python's shutdown.
    """
    server = ServiceServer(service)
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run_on(sock)
    except BaseException:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
        raise
    if service.failure is not None:
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
        raise ScenewatchError(f"the service could not start: {service.failure}")
    return 130 if signal.SIGINT in server.signals else 0


class ServerThread:
    """A service served on a thread (tests, benchmarks): ``with ServerThread(service) as url: ...``."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.server = ServiceServer(service)
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self.server.run_on, args=(self.sock,), daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise ScenewatchError("the server did not start (see the log)")
            self._thread.join(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop serving and close the service; waits for both."""
        self.server.stop()
        self._thread.join(timeout)
        self.sock.close()
