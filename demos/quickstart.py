"""The main job on a fresh machine, end to end, with no downloads.

Builds a tiny random Qwen3-VL checkpoint (unless SCENEWATCH_MODEL names a real one),
watches the shop-door CCTV clip (or a synthetic clip when the footage is absent) with the
home-entrance rules, prints the timeline, then asks the agent about it. With the tiny
checkpoint the model's words are gibberish; the flow, timings and storage are real. Point
SCENEWATCH_MODEL at a Qwen3-VL checkpoint folder for meaningful answers.

    make demo            # or: .venv/bin/python demos/quickstart.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def scenewatch(home: Path, *args: str) -> None:
    """Run one scenewatch command as a user would, and stop the demo if it fails."""
    command = [sys.executable, "-c", "from agent.cli.app import main; main()", "--home", str(home), *args]
    print(f"\n$ scenewatch --home {home} {' '.join(args)}", flush=True)
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit(f"demo step failed: scenewatch {' '.join(args)}")


def main() -> None:
    home = Path(os.environ.get("SCENEWATCH_HOME", ROOT / ".scenewatch-demo")).resolve()
    model = os.environ.get("SCENEWATCH_MODEL")
    if not model:
        model = str(home / "models" / "qwen3-vl-tiny")
        if not (Path(model) / "config.json").is_file():
            scenewatch(home, "model", "tiny", model)
    media = Path(os.environ.get("SCENEWATCH_TEST_MEDIA", ROOT.parent / "shared" / "data"))
    clip = media / "shopfront_cctv.mp4"
    if not clip.is_file():
        from agent.bench.clips import write_clip

        home.mkdir(parents=True, exist_ok=True)
        clip = write_clip(home / "synthetic.mp4", duration_s=30.0)
    rules = ROOT / "demos" / "rules" / "home_entrance.yaml"
    scenewatch(
        home,
        "watch",
        str(clip),
        "--model",
        model,
        "--every",
        "1s",
        "--rules",
        str(rules),
        "--jsonl",
        str(home / "observations.jsonl"),
    )
    scenewatch(home, "timeline", "--since", "1h")
    scenewatch(home, "ask", "When did someone pass the door?", "--model", model, "--max-new-tokens", "64")
    print(f"\nEverything is stored under {home} (SQLite log, vectors, thumbnails).")


if __name__ == "__main__":
    main()
