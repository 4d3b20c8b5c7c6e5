"""Why a stream URL gave no video: nothing answered (a wrong address, a camera that is down), or
something answered that is not video (a web page, an error status, garbage)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import av.error
import httpx

from agent.core.errors import ScenewatchError

CHECK_WAIT_S = 3.0
"""The longest a check after a failed open waits for a connection and for the first bytes."""

DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}


class StreamError(ScenewatchError):
    """A stream URL that gave no video; ``connected``: something answered at the address."""

    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


def explain_failure(url: str, error: Exception, timeout_s: float | None) -> StreamError:
    """The :class:`StreamError` for FFmpeg's failure to open ``url``.

    FFmpeg's error alone does not tell a server that sends garbage from one that sends nothing (both
    can end in the timeout), so the address is checked again: a connection, then the first bytes.
    """
    if isinstance(error, av.error.HTTPError):
        return StreamError(f"connected to {url}, but the server answered: {_reason(error)}", connected=True)
    if isinstance(error, ConnectionRefusedError):
        return StreamError(f"cannot connect to {url}: connection refused", connected=False)
    wait_s = min(timeout_s or CHECK_WAIT_S, CHECK_WAIT_S)
    connected, detail = check_address(url, wait_s)
    if not connected:
        return StreamError(f"cannot connect to {url}: {detail}", connected=False)
    return StreamError(f"connected to {url}, but {detail} (FFmpeg: {_reason(error)})", connected=True)


def check_address(url: str, wait_s: float) -> tuple[bool, str]:
    """Whether something accepts connections at ``url``'s host and port, and what it sends first."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return False, "the port is not a number"
    if not parts.hostname or port is None:
        return False, "no host and port to connect to"
    try:
        connection = socket.create_connection((parts.hostname, port), timeout=wait_s)
    except socket.gaierror:
        return False, f"no such host {parts.hostname}"
    except TimeoutError:
        return False, f"no answer within {wait_s:g} s"
    except OSError as exc:
        return False, exc.strerror or str(exc)
    with connection:
        if scheme in ("http", "https"):
            connection.close()
            return True, _http_answer(url, wait_s)
        if scheme == "rtsp":
            return True, _rtsp_answer(connection, url, wait_s)
    return True, "FFmpeg read no video from it"


def _http_answer(url: str, wait_s: float) -> str:
    try:
        with httpx.stream("GET", url, timeout=wait_s, verify=False) as response:
            kind = response.headers.get("content-type", "no content type")
            status = f"{response.status_code} {response.reason_phrase}"
            return f"what came was not video (the server answered {status}, {kind})"
    except httpx.TimeoutException:
        return f"it sent nothing within {wait_s:g} s"
    except httpx.HTTPError as exc:
        return f"what came was not HTTP ({exc})"


def _rtsp_answer(connection: socket.socket, url: str, wait_s: float) -> str:
    try:
        connection.sendall(f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        first = connection.recv(64)
    except TimeoutError:
        return f"it sent nothing within {wait_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not first:
        return "it closed the connection without a word"
    if first.startswith(b"RTSP/"):
        return "the RTSP server that answered sent no video FFmpeg can read"
    return "what came was not RTSP"


def _reason(error: Exception) -> str:
    """FFmpeg's message without the URL PyAV appends to it."""
    return getattr(error, "strerror", None) or str(error)
