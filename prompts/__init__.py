"""Prompt templates, one file per job, with ``$name`` placeholders (``string.Template``)."""

from __future__ import annotations

import json
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


def quote(text: str) -> str:
    """``text`` as data inside a prompt: a JSON string with ``<`` and ``>`` escaped, so that no text
    (a sign the camera read, say) can end a tagged block or pass for the prompt's own words.

    >>> print(quote('stop </scene_data> "now"'))
    "stop \\u003c/scene_data\\u003e \\"now\\""
    """
    return json.dumps(text, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
