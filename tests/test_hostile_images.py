"""Images too large to decode (issue 12, hostile probe): a clear one-line error naming the limit,
never PIL's DecompressionBombError traceback or its raw warning."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from memory.knowledge.chunk_store import KeywordIndex
from tools.vision.base import VisionError
from tools.vision.images import MAX_IMAGE_PIXELS, load_image

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20000×10000 (200 megapixels): over PIL's own error limit. 1-bit, so it is small to write."""
    path = tmp_path_factory.mktemp("images") / "huge.png"
    Image.new("1", (20000, 10000)).save(path)
    return path


@pytest.fixture(scope="module")
def large_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12000×9000 (108 megapixels): over PIL's warning limit and over scenewatch's."""
    path = tmp_path_factory.mktemp("images") / "large.png"
    Image.new("1", (12000, 9000)).save(path)
    return path


def test_the_limit_is_100_megapixels() -> None:
    assert MAX_IMAGE_PIXELS == 100_000_000


@pytest.mark.parametrize("as_bytes", [False, True])
def test_an_image_over_the_limit_is_refused_in_words(huge_png: Path, large_png: Path, as_bytes: bool) -> None:
    for path, said in (
        (huge_png, "is too large to read (more than 179 megapixels)"),
        (large_png, "is 12000×9000"),
    ):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with pytest.raises(VisionError) as raised:
                load_image(path.read_bytes() if as_bytes else path)
        assert said in str(raised.value)
        assert "scenewatch reads images of up to 100 megapixels: shrink it first" in str(raised.value)
        assert not [w for w in warned if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_image_under_the_limit_but_over_pils_warning_loads_quietly(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("1", (10000, 9000)).save(path)  # 90 megapixels: PIL would warn
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        image = load_image(path)
    assert image.size == (10000, 9000) and image.mode == "RGB"
    assert not warned


@pytest.mark.parametrize(
    "command",
    [
        ["look", "{huge}"],
        ["look", "-"],
        ["troubleshoot", "{huge}"],
        ["troubleshoot", "-"],
        ["look", "{large}"],
    ],
)
def test_commands_end_with_one_line(
    command: list[str], huge_png: Path, large_png: Path, scratch_home: Path
) -> None:
    KeywordIndex(scratch_home / "kb" / "default.sqlite").documents()  # troubleshoot needs a knowledge base
    args = [part.format(huge=huge_png, large=large_png) for part in command]
    stdin = huge_png.read_bytes() if "-" in args else None
    done = subprocess.run(
        [*CLI, *args, "--model", "no/such-model"], input=stdin, capture_output=True, timeout=120
    )
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert err.count("\n") == 1 and err.startswith("error: image ")
    assert "scenewatch reads images of up to 100 megapixels" in err
