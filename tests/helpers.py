"""What several test modules share besides fixtures: fixed times, test doubles."""

from __future__ import annotations

from datetime import datetime

FROZEN_NOW = datetime(2025, 6, 14, 15, 30).timestamp()
"""A fixed local time (a Saturday afternoon) for tests about "today", "10m ago" and dates."""
