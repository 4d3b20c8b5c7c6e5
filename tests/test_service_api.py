"""The REST API of ``scenewatch serve`` over a watched synthetic clip (scripted model, real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_support import RULES, Served, served, settings_for

from agent.core.config import load_settings
from agent.service.app import create_app
from agent.service.runtime import Service
from memory.events import Outbox
from memory.store import Store

PATHS = (
    "/api/sources",
    "/api/observations",
    "/api/timeline",
    "/api/events",
    "/api/recall",
    "/api/narrate",
    "/api/ask",
    "/api/look",
    "/api/troubleshoot",
    "/api/kb/search",
    "/api/stream",
    "/healthz",
    "/readyz",
    "/metrics",
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, synthetic_clip: Path) -> Iterator[Served]:
    """One service that watched the synthetic clip to its end, with a rule on the red box."""
    home = tmp_path_factory.mktemp("api") / "home"
    rules = home.parent / "rules.yaml"
    rules.write_text(RULES)
    with served(settings_for(home), sources=[str(synthetic_clip)], rules=rules) as running:
        running.wait_for(lambda: running.source_state(1) == "finished", what="the clip to end")
        running.wait_for(lambda: running.service.reader.unindexed_count() == 0, what="indexing")
        yield running


def test_health_readiness_and_the_api_description(api: Served) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["ready"] is True and ready["model"] == "scripted"
    paths = api.client.get("/openapi.json").json()["paths"]
    assert all(path in paths for path in PATHS)
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    assert "cdn." not in docs.text  # works offline: the page's scripts come from this server
    assert api.client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200


def test_the_source_shows_its_counts_and_latest_observation(api: Served) -> None:
    (source,) = api.client.get("/api/sources").json()
    store = api.service.reader
    assert source["state"] == "finished" and source["live"] is False
    assert source["analysed"] == store.count() > 0
    assert source["sampled"] == source["analysed"] + source["gated"]
    assert source["latest"]["id"] == store.last_id()
    assert api.client.get(source["latest"]["thumbnail"]).headers["content-type"] == "image/jpeg"


def test_observations_page_by_cursor_newest_first_and_oldest_first(api: Served) -> None:
    store = api.service.reader
    every = [obs.id for obs in sorted(store.page(limit=1000), key=lambda obs: (obs.ts, obs.id))]
    assert len(every) >= 3
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/api/observations", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == every[::-1]
    oldest = api.client.get("/api/observations", params={"order": "oldest", "limit": 1000}).json()
    assert [item["id"] for item in oldest["items"]] == every and oldest["next_cursor"] is None
    first = store.get_many([every[0]])[0]
    in_range = api.client.get(
        "/api/observations", params={"since": str(first.ts), "until": str(first.ts), "source": "box.mp4"}
    ).json()
    assert [item["id"] for item in in_range["items"]] == [first.id]
    gone = api.client.get("/api/observations", params={"cursor": "999999"})
    assert gone.status_code == 400 and "names no observation" in gone.json()["error"]
    one = api.client.get(f"/api/observations/{first.id}").json()
    assert one["summary"] == first.summary and one["thumbnail"].endswith(f"/{first.id}/thumbnail")


def test_the_thumbnail_is_served_only_from_the_thumbnails_folder(api: Served, tmp_path: Path) -> None:
    store = Store(api.service.settings.db_path)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"\xff\xd8 not yours")
    obs_id = store.last_id()
    (kept,) = store.execute("SELECT thumb_path FROM observations WHERE id = ?", (obs_id,))[0]
    try:
        store.execute("UPDATE observations SET thumb_path = ? WHERE id = ?", (str(outside), obs_id))
        answer = api.client.get(f"/api/observations/{obs_id}/thumbnail")
        assert answer.status_code == 404 and "error" in answer.json()
        traversal = str(api.service.settings.thumbs_dir / ".." / ".." / "secret.jpg")
        store.execute("UPDATE observations SET thumb_path = ? WHERE id = ?", (traversal, obs_id))
        assert api.client.get(f"/api/observations/{obs_id}/thumbnail").status_code == 404
    finally:
        store.execute("UPDATE observations SET thumb_path = ? WHERE id = ?", (kept, obs_id))
        store.close()
    assert api.client.get(f"/api/observations/{obs_id}/thumbnail").status_code == 200
    assert api.client.get("/api/observations/999999/thumbnail").status_code == 404


def test_timeline_events_and_recall_match_the_memory(api: Served) -> None:
    timeline = api.client.get("/api/timeline", params={"since": "1d", "until": "2d"})
    assert timeline.status_code == 400  # since after until
    entries = api.client.get("/api/timeline", params={"since": "1d"}).json()
    assert {entry["kind"] for entry in entries} == {"episode", "event"}
    events = api.client.get("/api/events").json()
    outbox = Outbox(api.service.reader)
    assert [event["id"] for event in events] == [event["id"] for event in outbox.events()]
    assert events and all(event["rule"] == "box_seen" for event in events)
    assert events[0]["deliveries"][0]["sink"] == "log"
    one = api.client.get(f"/api/events/{events[0]['id']}").json()
    assert one == events[0]
    assert api.client.get("/api/events/999999").status_code == 404
    assert api.client.get(f"/api/events/{events[0]['id']}/clip").status_code == 404  # no clip asked
    recalled = api.client.get("/api/recall", params={"q": "a red box", "since": "1d"}).json()
    assert recalled and "red box" in recalled[0]["summary"]
    assert api.client.get(recalled[0]["thumbnail"]).status_code == 200


def test_narrate_uses_the_services_model(api: Served) -> None:
    story = api.client.post("/api/narrate", json={"since": "1d"}).json()
    assert story["episodes"] >= 1 and story["model_calls"] == 1
    assert story["text"].startswith('{"summary": "frame')  # the scripted model wrote it


def test_unknown_sources_and_bad_times_are_clear_json_errors(api: Served) -> None:
    missing = api.client.get("/api/observations", params={"source": "nowhere.mp4"})
    assert missing.status_code == 404 and "no source nowhere.mp4" in missing.json()["error"]
    assert api.client.get("/api/timeline", params={"since": "yesterday-ish"}).status_code == 400
    assert api.client.get("/api/observations", params={"cursor": "abc"}).status_code == 422
    assert api.client.get("/api/sources/12345").status_code == 404
    assert api.client.get("/api/nothing/here").json() == {"error": "Not Found"}
    knowledge = api.client.get("/api/kb/search", params={"q": "E-104"})
    assert knowledge.status_code == 400 and "error" in knowledge.json()


def test_metrics_count_what_the_database_holds(api: Served) -> None:
    text = api.client.get("/metrics").text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    store, outbox = api.service.reader, Outbox(api.service.reader)
    name = str(api.service.reader.sources()[0])
    source = (("source", name),)
    assert samples[("scenewatch_frames_analysed_total", source)] == store.count(name)
    assert samples[("scenewatch_observations_stored", source)] == store.count(name)
    sampled = samples[("scenewatch_frames_sampled_total", source)]
    assert sampled == store.count(name) + samples[("scenewatch_frames_gated_total", source)]
    decisions = sum(v for (n, labels), v in samples.items() if n == "scenewatch_gate_decisions_total")
    assert decisions == sampled
    assert samples[("scenewatch_observations_indexed", ())] == store.count()
    assert samples[("scenewatch_observations_waiting", ())] == 0
    raised = samples[("scenewatch_events_raised_total", (("rule", "box_seen"), ("source", name)))]
    assert raised == len(outbox.events(limit=1000))
    delivered = samples[("scenewatch_events_delivered_total", (("sink", "log"),))]
    pending = samples[("scenewatch_events_pending", (("sink", "log"),))]
    assert delivered + pending == raised
    engine = api.service.engine.stats
    assert samples[("scenewatch_model_batch_size_sum", ())] == engine.requests >= store.count()
    assert samples[("scenewatch_model_latency_seconds_count", ())] == engine.batches
    assert samples[("scenewatch_engine_queue_depth", ())] == 0
    assert samples[("scenewatch_sources", (("state", "finished"),))] == 1


def test_two_services_keep_separate_metrics(tmp_path: Path) -> None:
    first = Service(load_settings(home=tmp_path / "a"))
    second = Service(load_settings(home=tmp_path / "b"))
    try:
        create_app(first), create_app(second)
        assert first.metrics.registry is not second.metrics.registry
        assert b"scenewatch_engine_queue_depth" in first.metrics.exposition()
    finally:
        first.close()
        second.close()
