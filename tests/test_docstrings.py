"""The examples in docstrings run as written (``>>>`` lines), as supervision's do."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WITH_EXAMPLES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("agent", "tools", "memory", "prompts")
    for path in (ROOT / package).rglob("*.py")
    if ">>> " in path.read_text()
)


def test_some_modules_have_examples() -> None:
    assert "prompts" in WITH_EXAMPLES and "agent.core.plugins" in WITH_EXAMPLES


@pytest.mark.parametrize("module", WITH_EXAMPLES)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
