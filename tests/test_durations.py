"""Duration and since parsing."""

from __future__ import annotations

from datetime import datetime

import pytest

from agent.core.durations import parse_duration, parse_since
from agent.core.errors import ScenewatchError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2", 2.0),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        ("10m", 600.0),
        ("10min", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("30d", 30 * 86400.0),
        (" 2 s ", 2.0),
        ("1W", 604800.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1x", "s", "-1s", "1s-", "1 2 3 h x", "1 2"])
def test_parse_duration_rejects_nonsense(text: str) -> None:
    with pytest.raises(ScenewatchError):
        parse_duration(text)


def test_parse_since() -> None:
    now = 1_700_000_000.0
    assert parse_since("10m", now=now) == now - 600
    assert parse_since("2h ago", now=now) == now - 7200
    assert parse_since("1700000123") == 1_700_000_123.0
    assert parse_since("2024-05-01T12:00") == datetime(2024, 5, 1, 12, 0).timestamp()
    with pytest.raises(ScenewatchError, match="not a time"):
        parse_since("yesterday-ish")
