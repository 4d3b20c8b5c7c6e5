"""Named plugins of one kind: vision backends, chat models, event sinks.

scenewatch's own plugins and those of other installed packages are found the same way, as in
Simon Willison's ``llm``: each is an object named by ``"module:attribute"``, loaded only when it
is first asked for (the ``local`` backend imports torch; ``openai`` does not). scenewatch lists its
own in code; another package adds one through an entry point of the registry's group::

    [project.entry-points."scenewatch.backends"]
    mybackend = "my_package.backend:plugin"

>>> from agent.core.plugins import Registry
>>> colours = Registry("colour", "example.colours", {"red": "colorsys:rgb_to_hsv"})
>>> colours.names()
['red']
>>> colours.get("red").__name__
'rgb_to_hsv'
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from agent.core.errors import ScenewatchError

T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins of one kind by name: scenewatch's own (``builtin``), then the entry points of ``group``."""

    def __init__(self, kind: str, group: str, builtin: Mapping[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._paths = dict(builtin)
        self._loaded: dict[str, T] = {}
        self._found = False
        self._lock = threading.Lock()

    def _discover(self) -> None:
        """Add the entry points of installed packages (once); scenewatch's own names win."""
        if self._found:
            return
        for point in entry_points(group=self.group):
            self._paths.setdefault(point.name, point.value)
        self._found = True

    def names(self) -> list[str]:
        """Every plugin's name, sorted."""
        with self._lock:
            self._discover()
            return sorted({*self._paths, *self._loaded})

    def get(self, name: str) -> T:
        """The plugin called ``name``, loaded on first use; ScenewatchError listing the names when none is."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            self._discover()
            path = self._paths.get(name)
            if path is None:
                known = ", ".join(sorted({*self._paths, *self._loaded}))
                raise ScenewatchError(f"no {self.kind} called {name!r} (known: {known})")
            self._loaded[name] = _load(path, f"{self.kind} {name!r}")
            return self._loaded[name]

    def add(self, name: str, plugin: T) -> None:
        """Register ``plugin`` under ``name`` from code (a program embedding scenewatch, a test)."""
        with self._lock:
            self._loaded[name] = plugin

    def remove(self, name: str) -> None:
        """Forget a plugin added from code (scenewatch's own and entry points stay)."""
        with self._lock:
            self._loaded.pop(name, None)


def _load(path: str, what: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attribute.split(".") if attribute else ():
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ScenewatchError(f"cannot load {what} from {path}: {exc}") from exc
    return value
