"""``scenewatch mcp``: scenewatch's tools for another agent, as an MCP server on stdin/stdout."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import typer

from agent.cli.common import settings
from agent.cli.options import BackendOption, DbOption, DeviceOption, ModelOption
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from memory.store import Store
from tools.vision.base import VisionRequest, VisionResult
from tools.vision.engine import Engine


class LazyEngine:
    """The engine, loaded on the first request that needs the model: an MCP client that only
    recalls or reads the timeline never waits for a model to load."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_name = settings.model
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        with self._lock:
            if self._engine is None:
                from tools.vision.registry import make_backend

                self._engine = Engine(
                    make_backend(self.settings),
                    batch_size=self.settings.batch_size,
                    batch_wait_ms=self.settings.batch_wait_ms,
                )
        return self._engine.generate(requests)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


def mcp(
    db: DbOption = None,
    model: ModelOption = None,
    backend: BackendOption = None,
    device: DeviceOption = None,
) -> None:
    """Serve look, recall, timeline, events and ask to another agent over MCP (stdio).

    Give an MCP client the command `scenewatch mcp` (--db or SCENEWATCH_HOME picks the data).

    The model loads on the first look or ask. `scenewatch serve` has the same tools at /mcp.
    """
    from agent.service.mcp import build_mcp_server
    from memory.vectors import open_vectors

    cfg = settings(db=db, model=model, backend=backend, device=device)
    if cfg.db is not None and not cfg.db_path.is_file():
        raise ScenewatchError(f"no observation database at {cfg.db_path}")
    store = Store(cfg.db_path)
    engine = LazyEngine(cfg)
    try:
        with open_vectors(store, cfg) as vectors:
            build_mcp_server(cfg, store=store, engine=engine, vectors=vectors).run("stdio")
    finally:
        engine.close()
        store.close()


def register(app: typer.Typer) -> None:
    app.command()(mcp)
