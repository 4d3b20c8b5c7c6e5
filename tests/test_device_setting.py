"""A wrong ``--device`` / ``SCENEWATCH_DEVICE`` (or dtype) is one line of error before any model loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from agent.core.config import load_settings
from agent.core.errors import ScenewatchError
from tools.vision.base import VisionError
from tools.vision.local import LocalQwenBackend, pick_device, pick_dtype

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    return done.stderr


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "frame.jpg"
    Image.new("RGB", (64, 64)).save(path)
    return path


@pytest.mark.parametrize("text", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", " CUDA:1 "])
def test_device_names_torch_knows(text: str) -> None:
    assert load_settings(device=text).device == text.strip().lower()


@pytest.mark.parametrize("text", ["banana", "gpu", "cuda:", "cuda:x", "cuda1", "cpu:0", "xpu", ""])
def test_other_device_names_are_refused(text: str) -> None:
    with pytest.raises(
        ScenewatchError, match=r"device \(SCENEWATCH_DEVICE\): .* is not a torch device"
    ) as exc:
        load_settings(device=text)
    assert "auto, cpu, cuda, cuda:N, mps" in str(exc.value)


def test_bad_device_flag_is_one_line(photo: Path, tmp_path: Path) -> None:
    err = one_line_error(run("look", str(photo), "--model", str(tmp_path / "none"), "--device", "banana"))
    assert "device 'banana' is not a torch device (auto, cpu, cuda, cuda:N, mps)" in err


def test_bad_device_variable_stops_watch(tmp_path: Path) -> None:
    err = one_line_error(run("watch", str(tmp_path / "clip.mp4"), SCENEWATCH_DEVICE="banana"))
    assert "SCENEWATCH_DEVICE" in err and "device 'banana' is not a torch device" in err


def test_bad_dtype_variable_is_one_line(photo: Path, tmp_path: Path) -> None:
    err = one_line_error(
        run("look", str(photo), "--model", str(tmp_path / "none"), SCENEWATCH_DTYPE="banana")
    )
    assert "dtype (SCENEWATCH_DTYPE)" in err


@NO_GPU
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line_before_the_model(photo: Path, tmp_path: Path, device: str) -> None:
    # The model folder does not exist: the device is checked first.
    err = one_line_error(run("look", str(photo), "--model", str(tmp_path / "none"), "--device", device))
    assert f"device '{device}' asked for, but torch sees no CUDA GPU" in err
    assert "torch.cuda.is_available() is False" in err and "--device cpu or auto" in err


def test_gpu_index_past_the_last_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda") == "cuda"
    assert pick_device("cuda:0") == "cuda:0"
    with pytest.raises(VisionError, match=r"'cuda:1' asked for, but torch sees only 1 CUDA GPU \(cuda:0\)"):
        pick_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(VisionError, match=r"only 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        LocalQwenBackend("/no/model/here", device="cuda:2")


def test_mps_off_apple_silicon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(VisionError, match="torch sees no Apple GPU"):
        pick_device("mps")


def test_pick_device_and_dtype_refuse_what_torch_does_not_know() -> None:
    with pytest.raises(VisionError, match="'banana' is not a torch device"):
        pick_device("banana")
    assert pick_device("cpu") == "cpu"
    assert pick_dtype("float16", "cpu") is torch.float16
    assert pick_dtype("auto", "cpu") is torch.float32
    for dtype in ("banana", "cuda", "float"):  # getattr(torch, ...) would hand back a module or an alias
        with pytest.raises(VisionError, match=f"dtype '{dtype}' is not one of auto, bfloat16"):
            pick_dtype(dtype, "cpu")
