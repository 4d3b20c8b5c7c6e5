"""Prompt templates, one file per job, with ``$name`` placeholders (``string.Template``)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.md``."""
    return resources.files(__name__).joinpath(f"{name}.md").read_text("utf-8").strip()


def render_prompt(name: str, **values: object) -> str:
    """``prompts/<name>.md`` with its ``$placeholders`` filled in."""
    return Template(load_prompt(name)).substitute({k: str(v) for k, v in values.items()})
