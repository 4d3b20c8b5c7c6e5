"""Sources of the service: added, paused, resumed and removed through the API; back after a restart."""

from __future__ import annotations

from pathlib import Path

from service_support import frame_counter, served, settings_for

from agent.bench.clips import write_clip
from agent.core.config import Settings
from memory.sources import SourceRecord, list_sources
from memory.store import Store


def test_add_pause_resume_remove_and_bad_requests(tmp_path: Path) -> None:
    folder = tmp_path / "still"
    clip = write_clip(tmp_path / "long.mp4", duration_s=30.0)
    with served(settings_for(tmp_path / "home", every_s=1.0), backend=frame_counter(delay=0.2)) as api:
        added = api.client.post("/api/sources", json={"source": str(clip)})
        assert added.status_code == 201
        source = added.json()
        assert source["name"] == str(clip.resolve()) and source["state"] in ("starting", "watching")
        again = api.client.post("/api/sources", json={"source": str(clip)})
        assert again.status_code == 409 and "already added" in again.json()["error"]
        api.wait_for(lambda: api.client.get(f"/api/sources/{source['id']}").json()["analysed"] >= 2)
        paused = api.client.post(f"/api/sources/{source['id']}/pause").json()
        assert paused["state"] == "paused"
        count = api.service.reader.count()
        assert api.client.get("/api/sources").json()[0]["analysed"] == count  # nothing left in flight
        resumed = api.client.post(f"/api/sources/{source['id']}/resume").json()
        assert resumed["state"] in ("starting", "watching")
        api.wait_for(lambda: api.service.reader.count() > count, what="the watch to go on")
        assert api.client.delete(f"/api/sources/{source['id']}").status_code == 204
        assert api.client.get("/api/sources").json() == []
        assert api.service.reader.count() > count  # its observations stay
        assert api.client.delete(f"/api/sources/{source['id']}").status_code == 404
        assert api.client.post("/api/sources/77/pause").status_code == 404
        missing = api.client.post("/api/sources", json={"source": str(tmp_path / "nothing.mp4")})
        assert missing.status_code == 400 and "source not found" in missing.json()["error"]
        folder.mkdir()
        assert api.client.post("/api/sources", json={"source": str(folder)}).status_code == 400  # no images
        assert api.client.post("/api/sources", json={"source": ""}).status_code == 422
        malformed = api.client.post(
            "/api/sources", content=b'{"source": ', headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["error"].startswith("malformed JSON")
        assert api.client.get("/readyz").status_code == 200  # no crash


def test_sources_come_back_after_a_restart_where_they_were(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home", pipeline_depth=1)
    with served(settings, backend=frame_counter(delay=0.3)) as api:
        source = api.client.post("/api/sources", json={"source": str(synthetic_clip)}).json()
        api.wait_for(lambda: api.service.reader.count() >= 2, what="two observations")
    # stopped mid-file: the answers in flight were committed, the source is still "watching"
    (record,) = list_sources_of(settings)
    assert record.state == "watching"
    with served(settings, backend=frame_counter()) as api:
        api.wait_for(lambda: api.source_state(source["id"]) == "finished", what="the rest of the clip")
        video_times = [obs.video_t for obs in api.service.reader.page(limit=1000)]
        assert video_times == sorted(video_times) and len(set(video_times)) == len(video_times)
        restored = api.client.get(f"/api/sources/{source['id']}").json()
        assert restored["start_ts"] == source["start_ts"]
        first = api.service.reader.page(limit=1)[0]
        assert first.ts == source["start_ts"] + first.video_t  # the same time line across the restart
    with served(settings, sources=[str(synthetic_clip)]) as api:  # named again: already watched to its end
        count = api.service.reader.count()
        assert api.source_state(source["id"]) == "finished" and not api.service.watched()
        assert api.service.reader.count() == count


def test_a_paused_source_stays_paused_after_a_restart(synthetic_clip: Path, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    with served(settings, backend=frame_counter(delay=0.3), sources=[str(synthetic_clip)]) as api:
        api.client.post("/api/sources/1/pause")
    with served(settings) as api:
        assert api.source_state(1) == "paused" and not api.service.watched()


def list_sources_of(settings: Settings) -> list[SourceRecord]:
    store = Store(settings.db_path)
    try:
        return list_sources(store)
    finally:
        store.close()
