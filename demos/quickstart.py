"""The main job on a fresh machine, end to end, with no downloads.

With no vision-language model configured (no ``SCENEWATCH_MODEL``), the object detector shipped
with scenewatch watches the shop-door CCTV clip (or a synthetic clip when the footage is absent)
with the shop-door rules (a zone at the door), counting people (``SCENEWATCH_DETECTOR_CLASSES=person``):
every observation, event and timeline line is a statement about the clip from the detector and its
tracks. Recall searches them by meaning.
The agent (``ask``) needs a vision-language model to talk: the demo says so and shows the command.

With ``SCENEWATCH_MODEL`` naming a Qwen3-VL checkpoint folder (or a cached hub id), the same clip
is watched by that model with the detector's findings in every prompt, and the agent answers
a question about it.

    make demo            # or: .venv/bin/python demos/quickstart.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "When did someone pass the door?"


def scenewatch(home: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """Run one scenewatch command as a user would (with ``env`` set), and stop the demo if it fails."""
    command = [sys.executable, "-c", "from agent.cli.app import main; main()", "--home", str(home), *args]
    shown = "".join(f"{name}={value} " for name, value in (env or {}).items())
    print(f"\n$ {shown}scenewatch --home {home} {' '.join(args)}", flush=True)
    if subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}).returncode != 0:
        sys.exit(f"demo step failed: scenewatch {' '.join(args)}")


def demo_clip(home: Path) -> tuple[Path, list[str]]:
    """The shop-door clip and its rules, or a synthetic clip (a box, no people) and no rules."""
    media = Path(os.environ.get("SCENEWATCH_TEST_MEDIA", ROOT.parent / "shared" / "data"))
    clip = media / "shopfront_cctv.mp4"
    if clip.is_file():
        return clip, ["--rules", str(ROOT / "demos" / "rules" / "shop_door.yaml")]
    from agent.bench.clips import write_clip

    home.mkdir(parents=True, exist_ok=True)
    print("(the shop-door footage is not here: watching a synthetic clip instead)")
    return write_clip(home / "synthetic.mp4", duration_s=30.0), []


def main() -> None:
    home = Path(os.environ.get("SCENEWATCH_HOME", ROOT / ".scenewatch-demo")).resolve()
    model = os.environ.get("SCENEWATCH_MODEL")
    clip, rules = demo_clip(home)
    backend = ["--model", model] if model else ["--backend", "detector"]
    # The clip is about people at a door; the one other class the detector names on it is a man seen
    # from straight above at the frame's edge, taken for a "dog".
    people_only = {"SCENEWATCH_DETECTOR_CLASSES": "person"}
    jsonl = str(home / "observations.jsonl")
    scenewatch(home, "watch", str(clip), *backend, "--every", "1s", *rules, "--jsonl", jsonl, env=people_only)
    scenewatch(home, "timeline", "--since", "1h")
    scenewatch(home, "events", "--since", "1h")
    scenewatch(home, "recall", "a person at the door", "--since", "1h", "-k", "3")
    if model:
        scenewatch(home, "ask", QUESTION, "--model", model, "--max-new-tokens", "64")
    else:
        print(
            "\nThe agent (scenewatch ask) needs a vision-language model to hold a conversation: the detector "
            "cannot talk. Give it one and ask:\n"
            f'  SCENEWATCH_MODEL=/path/to/Qwen3-VL-checkpoint scenewatch --home {home} ask "{QUESTION}"\n'
            "  (or --backend openai with a vLLM/Ollama server; `scenewatch model tiny DIR` writes a tiny "
            "random checkpoint that runs but talks gibberish)"
        )
    print(f"\nEverything is stored under {home} (SQLite log, vectors, thumbnails; JSON lines: {jsonl}).")


if __name__ == "__main__":
    main()
