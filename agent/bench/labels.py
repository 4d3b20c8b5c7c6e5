"""People per second in the shared clips, labelled by eye: the truth the detector's counts are
measured against (``scenewatch bench detector``, tests/test_perception_media.py).

Labelled from 2×-enlarged frames sampled at whole seconds (frame ``round(t * fps)``).
``clear``: people with most of the body in view. ``upper``: ``clear`` plus the partly visible (legs
cut by the top edge of the frame, where the pavement goes on; a leg leaving at a side). A count
between ``clear - slack`` and ``upper`` is right; ``None``: not judged. The shop clip's slack is 1
(its small, top-down people are this detector's weak spot), the runner's 0.

shopfront_cctv.mp4 (64.7 s, 640×360): a woman in black carrying papers passes the door 1–5 s; a
man with a lanyard crosses from the top right 3–8 s; a man on the phone walks from the top left to
the bottom right 11–16 s (seen from above at the bottom edge at 16 s); a hooded woman with a bag
walks up from the right 12–15 s; a woman in a skirt, legs only, at the top edge 14–22 s; more legs
at the top edge in 0–7 s and 21–24 s; nobody from 25 s on.

runner.mp4 (17.4 s, 640×320): a runner crosses from left to right 1–14 s; a leg and an arm at the
right edge at 15 s; empty at 0 s and from 16 s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeopleLabels:
    """People in view per whole second of a clip: ``clear[t]`` and ``upper[t]`` (None: not judged)."""

    clip: str
    clear: tuple[int | None, ...]
    upper: tuple[int | None, ...]
    slack: int = 0

    def right(self, t: int, count: int) -> bool | None:
        """Whether ``count`` people at second ``t`` is right (``clear - slack`` .. ``upper``); None when
        the second is not judged."""
        clear = self.clear[t] if t < len(self.clear) else None
        upper = self.upper[t] if t < len(self.upper) else None
        if clear is None or upper is None:
            return None
        return max(0, clear - self.slack) <= count <= upper


_SHOP_CLEAR = (0, 1, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 2, 2, 2, 1, 1, 0, 0, 0, 0)
_SHOP_UPPER = (4, 4, 5, 4, 4, 4, 4, 3, 3, 1, 1, 2, 3, 3, 4, 4, 4, 1, 1, 1, 1)

SHOP = PeopleLabels(
    "shopfront_cctv.mp4",
    clear=_SHOP_CLEAR + (0,) * 44,  # 21-64 s: nobody in full view
    upper=_SHOP_UPPER + (1,) * 4 + (0,) * 40,  # legs at the top edge until 24 s, then nobody
    slack=1,
)
RUNNER = PeopleLabels(
    "runner.mp4",
    clear=(0, *(1,) * 14, None, 0, 0),
    upper=(0, *(1,) * 14, None, 0, 0),
)
CLIPS = (SHOP, RUNNER)
