"""End to end: a watch over a synthetic clip, the scripted backend, and a rules file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.core.config import load_settings
from agent.events.rule_engine import RuleEngine
from agent.events.ruleset import load_rules
from agent.pipeline.watch import run_watch
from memory.events import Outbox
from memory.store import Store
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.scripted import ScriptedBackend

RULES = """\
questions:
  lights_on: "Are the lights on?"
sinks:
  log: {{type: jsonl, path: {log}}}
rules:
  lit_and_empty:
    when: "lights_on and people == 0"
    for: 3 observations
    cooldown: 1h
  lit_for_four_seconds:
    when: "lights_on"
    for: 4s
  never_eight_in_a_row:
    when: "lights_on"
    for: 8 observations
"""


def answer(request: VisionRequest) -> str:
    """'Lights on' while the clip's red box (5 s to 12 s) covers the centre of the frame."""
    assert "Are the lights on?" in request.messages[-1]["content"][-1]["text"]
    image = np.asarray(request.images[0].convert("RGB"))
    red, green, _ = image[image.shape[0] // 2, image.shape[1] // 2].astype(int)
    lit = bool(red > 180 and green < 80)
    summary = "a red box lights the room" if lit else "an empty dark room"
    return json.dumps(
        {
            "summary": summary,
            "people": 0,
            "objects": [],
            "actions": [],
            "changes": "",
            "answers": {"lights_on": lit},
        }
    )


def test_watch_with_rules_over_a_clip(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = load_settings(db=tmp_path / "watch.db", every_s=1.0, heartbeat_s=1.0, events_close_s=2.0)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES.format(log=tmp_path / "events.jsonl"))
    ruleset = load_rules(rules_file)
    store = Store(settings.db_path)
    engine = Engine(ScriptedBackend(answer))
    rule_engine = RuleEngine(ruleset, store, settings)
    try:
        run_watch(
            [str(synthetic_clip)],
            settings,
            engine=engine,
            store=store,
            questions=ruleset.questions,
            listeners=[rule_engine],
        )
    finally:
        engine.close()
    lit = [obs for obs in store.between() if obs.answers.get("lights_on")]
    assert len(lit) == 7  # seconds 5 to 11
    start = lit[0].ts - lit[0].video_t
    events = Outbox(store).events()
    fired = {event["rule"]: round(event["ts"] - start, 1) for event in events}
    assert fired == {"lit_and_empty": 7.0, "lit_for_four_seconds": 9.0}
    assert len(events) == 2
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["rule"] for line in lines) == ["lit_and_empty", "lit_for_four_seconds"]
    assert Outbox(store).pending() == 0
