"""Shared fixtures: the tiny checkpoint, synthetic clips, real footage, a scratch home."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# One width for every console the tests read, set before agent.cli's consoles exist: rich fixes a
# console's width from COLUMNS when it is made, else asks the terminal (none under pytest-xdist).
os.environ["COLUMNS"] = "200"

from helpers import FROZEN_NOW

from agent.bench.clips import Appearance, write_clip
from agent.core.durations import use_clock
from tools.vision.base import VisionBackend
from tools.vision.registry import BACKENDS


@pytest.fixture(autouse=True)
def scratch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SCENEWATCH_HOME, so nothing touches the user's data."""
    home = tmp_path / "home"
    monkeypatch.setenv("SCENEWATCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[VisionBackend], None]]:
    """``use_backend(backend)`` makes every command run ``backend``: registered as the vision backend
    plugin ``test`` (as an outside package would register one) and named by SCENEWATCH_BACKEND."""

    def use(backend: VisionBackend) -> None:
        BACKENDS.add("test", lambda settings: backend)
        monkeypatch.setenv("SCENEWATCH_BACKEND", "test")

    yield use
    BACKENDS.remove("test")


@pytest.fixture
def frozen_clock() -> Iterator[float]:
    """scenewatch's "now" fixed at :data:`FROZEN_NOW`, whatever the hour or the time zone."""
    use_clock(lambda: FROZEN_NOW)
    yield FROZEN_NOW
    use_clock(None)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3-VL checkpoint, built once per test session."""
    from tools.vision.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "qwen3-vl-tiny")


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s at 10 fps: a static scene, a red box from 5 s to 12 s, then static again."""
    return write_clip(
        tmp_path_factory.mktemp("clips") / "box.mp4",
        duration_s=20.0,
        appearances=(Appearance(5.0, 12.0),),
    )


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """The folder of real footage named by SCENEWATCH_TEST_MEDIA (skips when unset), with its links
    resolved as scenewatch resolves a source's path (CI's ../shared may be a link)."""
    folder = os.environ.get("SCENEWATCH_TEST_MEDIA")
    if not folder or not (Path(folder) / "shopfront_cctv.mp4").is_file():
        pytest.skip("SCENEWATCH_TEST_MEDIA does not name the folder of test footage")
    return Path(folder).resolve()
