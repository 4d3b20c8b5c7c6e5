"""The outbox's relay: events reach their sinks, none lost, none sent twice at once.

An event and one outbox row per sink are committed together (:mod:`memory.events`) before
anything is sent. The :class:`DeliveryWorker` relays due rows to their sinks on a thread of its
own, retries failures with exponential backoff, and marks a row delivered only when the sink
accepted it. A row is leased while it is being sent, so two relays (a watch and ``scenewatch
events deliver``) never send it at the same time; undelivered rows are picked up again by the
next relay that starts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from memory.events import Delivery, Outbox

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 60.0


@dataclass
class DeliveryReport:
    """What one pass over the outbox did."""

    delivered: int = 0
    failed: int = 0


class Sender(Protocol):
    """Sends one event document to one sink target; raises on failure."""

    def send(
        self, target: dict[str, Any], document: dict[str, Any], *, delivery_id: int, timeout: float | None
    ) -> None: ...

    def close(self) -> None: ...


class DeliveryWorker:
    """Relays the outbox to the sinks on a background thread, with retries and backoff."""

    def __init__(
        self,
        outbox: Outbox,
        sender: Sender,
        *,
        backoff_s: float = 2.0,
        backoff_max_s: float = 300.0,
        close_s: float = 5.0,
    ) -> None:
        self.outbox, self.sender = outbox, sender
        self.backoff_s, self.backoff_max_s, self.close_s = backoff_s, backoff_max_s, close_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start relaying (this resumes rows left undelivered by earlier runs too)."""
        self._thread = threading.Thread(target=self._run, name="scenewatch-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New rows were committed: look at the outbox now."""
        self._wake.set()

    def deliver_pending(
        self, *, due_only: bool = True, deadline: float | None = None, stop: threading.Event | None = None
    ) -> DeliveryReport:
        """Try each undelivered row once (only those due, unless ``due_only`` is off)."""
        report, after = DeliveryReport(), 0
        while not (stop is not None and stop.is_set()):
            now = time.time()
            if deadline is not None and now >= deadline:
                break
            delivery = self.outbox.claim(now, after_id=after, due_only=due_only)
            if delivery is None:
                break
            after = delivery.id
            if self._attempt(delivery, None if deadline is None else deadline - now):
                report.delivered += 1
            else:
                report.failed += 1
        return report

    def _attempt(self, delivery: Delivery, time_left: float | None) -> bool:
        timeout = float(delivery.target.get("timeout_s", 5.0))
        if time_left is not None:
            timeout = max(0.1, min(timeout, time_left))
        try:
            self.sender.send(delivery.target, delivery.document, delivery_id=delivery.id, timeout=timeout)
        except Exception as exc:
            delay = min(self.backoff_max_s, self.backoff_s * 2**delivery.attempts)
            self.outbox.failed(delivery.id, str(exc) or type(exc).__name__, time.time() + delay)
            log.warning(
                "event %s to sink %s failed (attempt %d, retry in %.1fs): %s",
                delivery.document["id"],
                delivery.sink,
                delivery.attempts + 1,
                delay,
                exc,
            )
            return False
        self.outbox.succeeded(delivery.id, time.time())
        log.debug("event %s delivered to sink %s", delivery.document["id"], delivery.sink)
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.deliver_pending(stop=self._stop)
                due = self.outbox.next_due()
            except Exception:
                log.exception("event delivery pass failed")
                due = None
            wait = _IDLE_WAIT_S if due is None else min(_IDLE_WAIT_S, max(0.0, due - time.time()))
            self._wake.wait(wait)

    def close(self) -> None:
        """Stop the thread, make one bounded last attempt, leave the rest for the next start."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            report = self.deliver_pending(due_only=False, deadline=time.time() + self.close_s)
            left = self.outbox.pending()
        finally:
            self.sender.close()
        if report.delivered or report.failed:
            log.info("last delivery attempt: %d delivered, %d failed", report.delivered, report.failed)
        if left:
            log.warning("%d event deliveries left in the outbox for the next start", left)
