"""The issue's check: headless Chromium renders ``/`` of ``scenewatch serve CLIP`` during the watch; the
DOM holds the source's name and several frames; at 390 pixels the page fits the screen.

It runs the real command with ``--backend detector`` when that backend is registered, else with the
tiny checkpoint (the model's answers are noise; the frames, the page and the stream are real).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from service_support import wait_until
from web_support import PHONE, both_widths, fits, launched, loaded, opened, require_browser

from agent.bench.clips import Appearance, write_clip
from tools.vision.registry import BACKENDS

require_browser()

CLI = [sys.executable, "-c", "from agent.cli.app import main; main()"]


def test_the_page_of_scenewatch_serve_during_a_watch(
    request: pytest.FixtureRequest, tmp_path: Path, scratch_home: Path
) -> None:
    clip = write_clip(
        tmp_path / "shop front.mp4",
        duration_s=240.0,
        appearances=(Appearance(3.0, 9.0), Appearance(15.0, 30.0)),
    )
    if "detector" in BACKENDS.names():
        model = ["--backend", "detector"]
    else:
        model = ["--model", str(request.getfixturevalue("tiny_checkpoint")), "--device", "cpu"]
    process = subprocess.Popen(
        [*CLI, "serve", str(clip), *model, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SCENEWATCH_EVERY_S": "1", "SCENEWATCH_GATE_THRESHOLD": "0"},
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line + (process.stderr.read() if process.poll() is not None and process.stderr else "")
        api = httpx.Client(base_url=url[0], timeout=30)
        wait_until(lambda: api.get("/readyz").status_code == 200, 180, "the model to load")
        with launched() as browser, opened(browser, viewport=PHONE) as page:
            page.goto(url[0] + "/")
            page.get_by_role("heading", name="shop front.mp4").wait_for()
            page.locator("#grid img.thumb").nth(3).wait_for(timeout=120_000)  # four frames, live
            assert api.get("/api/sources/1").json()["state"] == "watching"  # during the watch
            frames = page.locator("#grid img.thumb")
            assert frames.count() >= 4
            assert loaded(frames.nth(0)) and loaded(frames.nth(1))  # live: bytes come after the element
            fits(page, PHONE["width"])
            latest = wait_until(
                lambda: page.locator("#grid img.latest").bounding_box(), 30, "the latest frame"
            )
            assert latest is not None and latest["x"] >= 0 and latest["x"] + latest["width"] <= PHONE["width"]
            assert latest["width"] > PHONE["width"] * 0.8  # the frame fills the phone's width
            both_widths(page, "serve")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
