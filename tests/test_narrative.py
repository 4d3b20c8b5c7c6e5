"""Narratives: the log the model sees, and prompts that stay under the budget for long ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from agent.core.config import Settings
from memory.episodes import EpisodeTracker
from memory.observation import Observation
from memory.store import Store
from tools.narrative import estimate_tokens, narrate
from tools.vision.base import VisionRequest
from tools.vision.scripted import ScriptedBackend

START = 1_700_000_000.0


def _prompt(request: VisionRequest) -> str:
    return request.messages[-1]["content"][-1]["text"]


def _answer(request: VisionRequest) -> str:
    prompt = _prompt(request)
    return "A chunk summary: things came and went." if "Summarise this part" in prompt else "THE STORY"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite")
    yield store
    store.close()


def _watch(store: Store, n: int, every_s: float = 2.0, per_state: int = 5) -> None:
    """``n`` observations; the scene changes every ``per_state`` of them (a cheap fake embedding)."""
    tracker = EpisodeTracker(store, Settings(), embeddings=DeterministicFakeEmbedding(size=32))
    for i in range(n):
        state = i // per_state
        obs = Observation(
            source="yard",
            ts=START + i * every_s,
            summary=f"Scene {state}: a {('red', 'blue', 'green')[state % 3]} car near the gate.",
            people=state % 2,
            changes=f"the car moved to spot {state}" if i % per_state == 0 else "none",
        )
        store.add(obs)
        tracker.on_observation(obs)
    tracker.close()


def test_a_short_range_is_told_in_one_prompt_with_times_durations_and_changes(store: Store) -> None:
    _watch(store, 20, every_s=10.0)
    backend = ScriptedBackend(_answer)
    story = narrate(store, backend, START, START + 200, "yard", Settings())
    assert story.text == "THE STORY"
    assert (story.episodes, story.events, story.model_calls, story.levels) == (4, 0, 1, 1)
    prompt = _prompt(backend.requests[0])
    assert "Camera: yard" in prompt
    # Scene 1 is seen from 50 s to 90 s and lasts until scene 2 is first seen at 100 s.
    assert (
        "(50s, 5 obs) [yard] Scene 1: a blue car near the gate. Changed: the car moved to spot 1." in prompt
    )
    assert "(people 1)" in prompt


def test_ten_thousand_observations_keep_every_prompt_under_the_budget(store: Store) -> None:
    _watch(store, 10_000)
    budget = 3000
    backend = ScriptedBackend(_answer)
    story = narrate(store, backend, START, START + 20_000, None, Settings(narrate_token_budget=budget))
    assert story.text == "THE STORY" and story.episodes == 2000
    prompts = [_prompt(request) for request in backend.requests]
    assert story.levels >= 2 and story.model_calls == len(prompts) > 1
    assert max(estimate_tokens(prompt) for prompt in prompts) <= budget
    assert story.max_prompt_tokens <= budget
    assert "(summary)" in prompts[-1]  # the last prompt tells the story from the chunk summaries
    # A model that ignores its length limit is clipped; a tiny budget still ends, still bounded.
    rambling = ScriptedBackend(lambda request: "word " * 2000)
    small = narrate(store, rambling, START, START + 20_000, None, Settings(narrate_token_budget=400))
    assert small.levels >= 3
    assert max(estimate_tokens(_prompt(request)) for request in rambling.requests) <= 400


def test_nothing_observed_needs_no_model(store: Store) -> None:
    backend = ScriptedBackend([])
    story = narrate(store, backend, START, START + 60, None, Settings())
    assert story.text == "Nothing was observed in this time range." and not backend.requests
