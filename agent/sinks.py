"""Where events go: a line on stdout, a line in a JSONL file, or a signed JSON POST to a webhook.

A webhook request carries the event as a JSON body and, when the sink has a secret, the header
``X-Scenewatch-Signature: sha256=<hex HMAC-SHA256 of the body>``. ``X-Scenewatch-Delivery`` is
the same on every retry of one delivery, so a receiver can drop a repeat it has already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

SIGNATURE_HEADER = "X-Scenewatch-Signature"
DELIVERY_HEADER = "X-Scenewatch-Delivery"
EVENT_HEADER = "X-Scenewatch-Event"
SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


class DeliveryError(RuntimeError):
    """A sink did not accept an event; the delivery is retried later."""


def encode(document: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) for an event."""
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_secret(target: dict[str, Any]) -> str | None:
    """The sink's secret, read from its environment variable when it names one."""
    if "secret_env" in target:
        secret = os.environ.get(target["secret_env"])
        if not secret:
            raise DeliveryError(
                f"environment variable {target['secret_env']} (the webhook secret) is not set"
            )
        return secret
    return target.get("secret")


def missing_secrets(sinks: dict[str, dict[str, Any]]) -> list[str]:
    """``sink (VARIABLE)`` for each webhook whose secret variable is not set."""
    return [
        f"{name} ({target['secret_env']})"
        for name, target in sinks.items()
        if "secret_env" in target and not os.environ.get(target["secret_env"])
    ]


class Sender:
    """Sends an event document to a sink target (a dict from the rules file); raises DeliveryError."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console()
        self._http = httpx.Client(follow_redirects=False, headers={"User-Agent": "scenewatch"})

    def send(
        self,
        target: dict[str, Any],
        document: dict[str, Any],
        *,
        delivery_id: int,
        timeout: float | None = None,
    ) -> None:
        kind = target.get("type")
        if kind == "stdout":
            self._print(document)
        elif kind == "jsonl":
            self._append(Path(target["path"]), document)
        elif kind == "webhook":
            self._post(target, document, delivery_id, timeout or float(target.get("timeout_s", 5.0)))
        else:
            raise DeliveryError(f"unknown sink type {kind!r}")

    def _print(self, document: dict[str, Any]) -> None:
        when = datetime.fromtimestamp(document["ts"]).strftime("%Y-%m-%d %H:%M:%S")
        style = SEVERITY_STYLES.get(document["severity"], "")
        self._console.print(
            f"{when} [{style}]{document['severity'].upper()}[/] {escape(document['source'])} "
            f"[bold]{escape(document['rule'])}[/]: {escape(document['message'])}",
            highlight=False,
        )

    def _append(self, path: Path, document: dict[str, Any]) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(document, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise DeliveryError(f"cannot append to {path}: {exc.strerror or exc}") from exc

    def _post(
        self, target: dict[str, Any], document: dict[str, Any], delivery_id: int, timeout: float
    ) -> None:
        body = encode(document)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: str(document["id"]),
            DELIVERY_HEADER: str(delivery_id),
        }
        secret = webhook_secret(target)
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        try:
            response = self._http.post(target["url"], content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{target['url']}: {type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{target['url']} answered HTTP {response.status_code}")

    def close(self) -> None:
        self._http.close()
