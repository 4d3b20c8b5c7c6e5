"""Event clips in ``scenewatch serve``: a rule with ``clip:`` gets an MP4 of the frames around its
event, served at ``/api/events/{id}/clip``; a clip path that leads out of the clips folder is not."""

from __future__ import annotations

import io
from pathlib import Path

import av
from service_support import Served, served, settings_for

from memory.events import NewEvent, Outbox

RULES = """\
questions:
  box: "Is there a red box?"
rules:
  box_seen:
    when: box
    clip: 3s
"""


def clip_of(api: Served, event_id: int) -> bytes | None:
    """The clip's MP4 once it is written (404 until then)."""
    response = api.client.get(f"/api/events/{event_id}/clip")
    if response.status_code != 200:
        return None
    assert response.headers["content-type"] == "video/mp4"
    return response.content


def test_a_rule_with_a_clip_gets_its_mp4_served(synthetic_clip: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for(tmp_path / "home", clip_after_s=1.0, detector=False)
    with served(settings, sources=[str(synthetic_clip)], rules=rules) as api:
        api.wait_for(lambda: api.source_state(1) == "finished", what="the clip to end")
        [event] = api.client.get("/api/events").json()
        assert event["rule"] == "box_seen" and event["payload"]["observation"]["video_t"] == 5.0
        assert event["payload"]["clip"].startswith("clips/") and event["payload"]["clip_s"] == 3.0
        mp4 = api.wait_for(lambda: clip_of(api, event["id"]), what="the clip to be written")

        with av.open(io.BytesIO(mp4)) as video:
            frames = [frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)]
        # sampled every second from 2 s to 6 s: the box (red, in the centre) from the fourth frame on
        assert len(frames) == 5
        red = [bool(frame[frame.shape[0] // 2, frame.shape[1] // 2][0] > 180) for frame in frames]
        assert red == [False, False, False, True, True]

        outbox = Outbox(api.service.reader)
        for path in ("clips/../scenewatch.db", "../../etc/passwd", str(settings.db_path)):
            [made] = outbox.record(
                [NewEvent(1.0, str(synthetic_clip), "forged", "rule", "info", "x", {"clip": path})]
            )
            refused = api.client.get(f"/api/events/{made}/clip")
            assert refused.status_code == 404 and "is not there" in refused.json()["error"]
