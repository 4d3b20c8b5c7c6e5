"""Troubleshooting demo: a device photo, a knowledge base of manuals, cited steps.

Ingests the demo manuals (a home router, an office printer, a network video recorder) into a
scratch data folder, draws a photo of the router with its Internet light amber (or uses
``--photo``), and runs the whole flow: the model reads the photo, the knowledge base retrieves
manual sections, the model answers in numbered steps citing ``[source § section]``.

Without ``--model`` it builds a tiny random Qwen3-VL checkpoint: the flow, retrieval and
citation checks are real, the model's words are gibberish (the question still drives the
retrieval). Give a real checkpoint for meaningful answers:

    .venv/bin/python demos/troubleshoot/run_demo.py
    .venv/bin/python demos/troubleshoot/run_demo.py --model Qwen/Qwen3-VL-8B-Instruct --photo router.jpg
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from agent.cli.common import configure_logging, console
from agent.core.config import load_settings
from memory.knowledge.knowledge_base import KnowledgeBase
from tools.troubleshoot import troubleshoot
from tools.vision.images import load_image
from tools.vision.registry import make_backend
from tools.vision.tiny import build_tiny_checkpoint

MANUALS = Path(__file__).resolve().parent / "manuals"
LIGHTS = [("Power", "green"), ("Internet", "orange"), ("2.4G", "blue"), ("5G", "blue"), ("WPS", "black")]


def draw_router_photo() -> Image.Image:
    """A drawn router front panel: the Nordlink HR-450 with its Internet light amber."""
    image = Image.new("RGB", (640, 400), (205, 205, 200))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((70, 130, 570, 290), radius=18, fill=(30, 30, 34))
    draw.text((95, 150), "NORDLINK  HR-450", fill="white")
    for i, (name, colour) in enumerate(LIGHTS):
        x = 110 + i * 95
        draw.ellipse((x, 215, x + 18, 233), fill=colour, outline="grey")
        draw.text((x - 6, 245), name, fill="white")
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder or cached hub id (default: a tiny random model)")
    parser.add_argument("--backend", choices=["local", "openai"], help="vision backend (default: local)")
    parser.add_argument("--photo", type=Path, help="device photo (default: a drawn router panel)")
    parser.add_argument("--question", default="The internet light is blinking amber. What should I do?")
    parser.add_argument("--home", type=Path, help="data folder (default: a new temporary folder)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="most tokens in each answer")
    args = parser.parse_args()
    configure_logging(verbose=False)

    home = args.home or Path(tempfile.mkdtemp(prefix="scenewatch-troubleshoot-"))
    model = args.model or str(build_tiny_checkpoint(home / "models" / "qwen3-vl-tiny"))
    cfg = load_settings(home=home, model=model, backend=args.backend, max_new_tokens=args.max_new_tokens)
    kb = KnowledgeBase.open(cfg, "demo")
    for added in kb.add([MANUALS]):
        console.print(f"{added.status:<9} {added.path.name} ({added.chunks} chunks)", highlight=False)
    photo = load_image(args.photo) if args.photo else draw_router_photo()
    if not args.photo:
        photo.save(home / "router.jpg")
        console.print(f"photo: {home / 'router.jpg'}", highlight=False)

    result = troubleshoot(make_backend(cfg), photo, kb, cfg, args.question)

    console.rule("retrieval query")
    console.print(result.query, markup=False, highlight=False)
    console.rule("retrieved manual sections")
    for hit in result.chunks:
        console.print(
            f"{hit.score:.4f}  sim {hit.similarity:.2f}  {hit.citation}", markup=False, highlight=False
        )
    console.rule("answer" if result.covered else "answer (not covered)")
    console.print(result.answer, markup=False, highlight=False)
    console.rule("as JSON (scenewatch troubleshoot --json)")
    console.print_json(json.dumps(result.to_dict(), ensure_ascii=False))


if __name__ == "__main__":
    main()
