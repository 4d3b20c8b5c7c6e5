"""``scenewatch look`` and ``scenewatch model tiny`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=120)


def test_model_tiny_then_look_json(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    made = run("model", "tiny", str(tiny))
    assert made.returncode == 0, made.stderr
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)).save(photo)
    done = run("look", str(photo), "--model", str(tiny), "--json", "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert {"text", "model", "latency_ms", "image_tokens"} <= record.keys()
    assert record["model"] == str(tiny)
    assert record["image_tokens"] == 14 * 8  # 640x360 -> 448x252 -> 448x256
    from_stdin = run("look", "-", "--model", str(tiny), "--max-new-tokens", "4", stdin=photo.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr


def test_missing_image_is_one_line_without_traceback(tiny_checkpoint: Path) -> None:
    done = run("look", "missing.jpg", "--model", str(tiny_checkpoint))
    assert done.returncode != 0
    err = done.stderr.decode()
    assert "Traceback" not in err
    assert "image not found: missing.jpg" in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_image_and_unknown_model(tmp_path: Path, tiny_checkpoint: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    done = run("look", str(bad), "--model", str(tiny_checkpoint))
    assert done.returncode != 0 and b"cannot read image" in done.stderr
    assert b"Traceback" not in done.stderr
    photo = tmp_path / "ok.png"
    Image.new("RGB", (64, 64)).save(photo)
    unknown = run("look", str(photo), "--model", "nobody/no-such-model")
    assert unknown.returncode != 0 and b"--model PATH" in unknown.stderr
    assert b"Traceback" not in unknown.stderr


def test_unreachable_server(tmp_path: Path) -> None:
    photo = tmp_path / "ok.png"
    Image.new("RGB", (64, 64)).save(photo)
    done = subprocess.run(
        [*CLI, "look", str(photo), "--backend", "openai", "--model", "m"],
        capture_output=True,
        timeout=60,
        env={
            **__import__("os").environ,
            "SCENEWATCH_OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "SCENEWATCH_OPENAI_RETRIES": "0",
        },
    )
    assert done.returncode != 0 and b"cannot reach" in done.stderr
    assert b"Traceback" not in done.stderr
