"""The ``watch`` tool: "tell me when a package is left at the door" becomes a watch question and a rule.

The tool only turns the model's arguments into a request to a :class:`WatchRegistry`
(:class:`agent.events.watchlist.Watchlist`), which checks the rule with the rules parser, stores
the watch and, in a running service, starts it. A bad predicate or an unknown source comes back to
the model as the tool's error, so it can correct itself.
"""

from __future__ import annotations

from typing import Literal, Protocol

from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from memory.watches import Watch


class WatchRegistry(Protocol):
    """Where watches go (:class:`agent.events.watchlist.Watchlist`)."""

    @property
    def running(self) -> bool:
        """Whether watches start at once (a running service) or are only stored."""
        ...

    def add(
        self,
        *,
        source: str | None,
        question: str,
        name: str | None = None,
        when: str | None = None,
        hold: str | None = None,
        severity: str = "warning",
    ) -> tuple[Watch, bool]:
        """Check, store and (when its source runs) start a watch; returns it and whether it started."""
        ...


class WatchArgs(BaseModel):
    question: str = Field(
        description="a yes/no question about the picture, asked on every analysed frame "
        "(for example: Is a package lying at the door?)"
    )
    source: str | None = Field(
        default=None, description="camera or video to watch; default: the one discussed"
    )
    name: str | None = Field(
        default=None,
        description="short snake_case name of the question, used in 'when' (for example: package_at_door); "
        "default: made from the question",
    )
    when: str | None = Field(
        default=None,
        description="when to raise the event: a condition on the answer (by its name) and on people, "
        "objects, summary, hour..., for example 'package_at_door and people == 0'; "
        "default: the answer is yes",
    )
    hold: str | None = Field(
        default=None,
        description="how long the condition must hold first: '3 observations' or a duration (30s, 2m); "
        "default: 1 observation",
    )
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="the event's severity"
    )


def describe_watch(watch: Watch, started: bool) -> str:
    """What the model tells the user about a new watch: what is asked, when it fires, whether it runs."""
    state = (
        "It is running now."
        if started
        else f"It is stored and starts when `scenewatch serve` watches {watch.source}."
    )
    return (
        f"Watch {watch.id} set on {watch.source}: every analysed frame is asked {watch.question!r} "
        f"(answer named {watch.name}); a {watch.severity} event is raised when `{watch.predicate}` "
        f"holds for {watch.hold}. {state} Tell the user what was set up; it can be listed and removed "
        "(GET/DELETE /api/watches)."
    )


def make_watch_tool(watches: WatchRegistry, default_source: str | None = None) -> BaseTool:
    """``watch``: set up a watch question and its rule on a source (``default_source``: the one the
    conversation is about)."""

    @tool("watch", args_schema=WatchArgs)
    def watch(
        question: str,
        source: str | None = None,
        name: str | None = None,
        when: str | None = None,
        hold: str | None = None,
        severity: str = "warning",
    ) -> str:
        """Keep watching a camera for something and raise an event when it happens ("tell me
        when a package is left at the door", "alert me if someone is at the till for a minute").
        Give a yes/no question the vision model answers on every frame, and optionally a condition
        on its answer. Tell the user what was set up."""
        added, started = watches.add(
            source=source or default_source,
            question=question,
            name=name,
            when=when,
            hold=hold,
            severity=severity,
        )
        return describe_watch(added, started)

    return watch
