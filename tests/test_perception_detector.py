"""The detector: its shipped model checked at load, frames of any size or format, tiling, crowds."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.core.errors import ScenewatchError
from tools.perception import labels as model_files
from tools.perception.detector import (
    Detector,
    DetectorOptions,
    as_dicts,
    auto_grid,
    classes_setting,
    cut_by_tile,
    parse_tiling,
    tile_boxes,
)
from tools.perception.labels import SSD_FILE, SSD_SHA256, ModelFileError, checked_bytes, coco_labels
from tools.perception.pixels import to_bgr_uint8


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


@pytest.fixture(scope="module")
def runner_frame(media_dir: Path) -> np.ndarray:
    """runner.mp4 at 8 s: one runner, mid-stride."""
    capture = cv2.VideoCapture(str(media_dir / "runner.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, round(8 * capture.get(cv2.CAP_PROP_FPS)))
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def test_the_model_ships_with_its_provenance_and_license() -> None:
    folder = SSD_FILE.parent
    assert checked_bytes(SSD_FILE, SSD_SHA256)[:8]  # the packaged bytes are the expected ones
    provenance = (folder / "PROVENANCE.md").read_text()
    assert SSD_SHA256 in provenance and "Apache" in provenance
    assert "Apache License" in (folder / "LICENSE").read_text()
    assert len(coco_labels()) == 80 and coco_labels()[0] == "person"


def test_a_missing_model_is_one_error_naming_the_file_and_the_sha256(tmp_path: Path) -> None:
    missing = tmp_path / SSD_FILE.name
    with pytest.raises(ModelFileError) as error:
        checked_bytes(missing, SSD_SHA256)
    assert str(missing) in str(error.value) and SSD_SHA256 in str(error.value)
    assert isinstance(error.value, ScenewatchError)


def test_a_damaged_model_is_refused_before_it_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / SSD_FILE.name
    shutil.copy(SSD_FILE, damaged)
    data = bytearray(damaged.read_bytes())
    data[1000] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr("tools.perception.detector.SSD_FILE", damaged)
    with pytest.raises(ModelFileError, match=SSD_SHA256) as error:
        Detector()
    assert str(damaged) in str(error.value) and "damaged" in str(error.value)
    assert damaged != model_files.SSD_FILE  # the packaged file itself is untouched


def test_unknown_classes_and_tilings_are_clear_errors() -> None:
    with pytest.raises(ScenewatchError, match="'persons'"):
        classes_setting("persons, car")
    assert classes_setting(" person, car,person ") == ("person", "car")
    with pytest.raises(ScenewatchError, match="tiling"):
        parse_tiling("2by2")
    with pytest.raises(ScenewatchError, match="more than 16"):
        parse_tiling("5x5")
    assert [parse_tiling(text) for text in ("auto", "off", "3x2")] == [None, (1, 1), (3, 2)]


def test_auto_tiling_grid() -> None:
    assert auto_grid(320, 240) == (1, 1)  # small: one pass
    assert auto_grid(640, 360) == (2, 2)  # CCTV
    assert auto_grid(1280, 720) == (3, 2)
    assert auto_grid(1920, 1080) == (5, 3)
    cols, rows = auto_grid(8000, 6000)
    assert cols * rows <= 16 and min(cols, rows) >= 2


def test_tiles_cover_the_region_and_cut_boxes_are_found() -> None:
    cells = tile_boxes((0, 0, 640, 360), 2, 2)
    assert cells[0] == (0, 0, 352, 198) and cells[-1] == (288, 162, 640, 360)
    covered = np.zeros((360, 640), bool)
    for x1, y1, x2, y2 in cells:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    boxes = np.array(
        [[0, 0, 50, 50], [300, 10, 352, 60], [10, 150, 60, 198], [100, 100, 200, 150]], np.float32
    )
    assert cut_by_tile(boxes, cells[0], 640, 360).tolist() == [False, True, True, False]


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((40, 60), np.uint8),
        np.zeros((40, 60, 1), np.uint8),
        np.zeros((40, 60, 4), np.uint8),
        np.full((40, 60, 3), 65535, np.uint16),
        np.random.default_rng(0).random((40, 60, 3)),
        np.full((40, 60), np.nan, np.float64),
        np.ones((40, 60), bool),
        np.full((40, 60, 3), -5, np.int32),
        np.zeros((60, 40, 3), np.uint8).transpose(1, 0, 2),
    ],
    ids=["grey", "grey1", "bgra", "uint16", "float", "nan", "bool", "int32", "strided"],
)
def test_any_image_array_becomes_bgr_uint8(frame: np.ndarray) -> None:
    image = to_bgr_uint8(frame)
    assert image.shape == (40, 60, 3) and image.dtype == np.uint8 and image.flags["C_CONTIGUOUS"]


def test_what_is_not_an_image_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="shape"):
        to_bgr_uint8(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError):
        to_bgr_uint8([[0, 0], [0, 0]])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 1), np.uint8), ((1, 1, 3), np.uint8), ((0, 0, 3), np.uint8), ((0, 10), np.uint8),
     ((1, 5000, 3), np.uint8), ((5000, 1), np.uint8), ((300, 300, 4), np.uint8), ((240, 320), np.uint16),
     ((6000, 8000, 3), np.uint8)],
    ids=["1x1", "1x1x3", "empty", "0x10", "1x5000", "5000x1", "bgra", "uint16-grey", "8000x6000"],
)  # fmt: skip
def test_a_frame_of_any_size_or_format_never_crashes(
    detector: Detector, shape: tuple[int, ...], dtype: type
) -> None:
    found = detector.detect(np.full(shape, 128, dtype))
    assert found.xyxy.shape == (len(found), 4) and len(found.data["class_name"]) == len(found)
    assert as_dicts(found) == []  # a flat grey picture holds nothing


def test_a_class_filter_keeps_only_those_classes(media_dir: Path, runner_frame: np.ndarray) -> None:
    everything = Detector(DetectorOptions()).detect(runner_frame)
    assert "person" in everything.data["class_name"]
    assert len(Detector(DetectorOptions(classes=("car",))).detect(runner_frame)) == 0


def test_the_runner_in_any_format(detector: Detector, runner_frame: np.ndarray) -> None:
    variants = {
        "bgr": runner_frame,
        "grey": cv2.cvtColor(runner_frame, cv2.COLOR_BGR2GRAY),
        "bgra": cv2.cvtColor(runner_frame, cv2.COLOR_BGR2BGRA),
        "uint16": runner_frame.astype(np.uint16) * 257,
        "float": runner_frame / 255.0,
        "4x larger": cv2.resize(runner_frame, None, fx=4, fy=4),
    }
    for name, frame in variants.items():
        (person,) = [item for item in as_dicts(detector.detect(frame)) if item["label"] == "person"]
        assert person["score"] >= 0.8, name
        x1, y1, x2, y2 = person["box"]
        scale = 4 if name == "4x larger" else 1
        assert 200 * scale < x1 < x2 < 400 * scale and 0 <= y1 < y2 <= 320 * scale, name


def crowd(runner_frame: np.ndarray, cols: int, rows: int, size: tuple[int, int]) -> np.ndarray:
    """A mosaic of ``cols`` × ``rows`` copies of the runner (a synthetic crowd), resized to ``size``."""
    runner = runner_frame[20:320, 214:384]
    return cv2.resize(np.tile(runner, (rows, cols, 1)), size, interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize(
    ("cols", "rows", "size"), [(6, 4, (640, 600)), (8, 6, (960, 720)), (10, 4, (1280, 400))]
)
def test_a_crowd_beyond_one_pass_is_counted(
    detector: Detector, runner_frame: np.ndarray, cols: int, rows: int, size: tuple[int, int]
) -> None:
    """One pass returns at most 20 boxes; the default tiling finds every runner of the mosaic."""
    people = crowd(runner_frame, cols, rows, size)
    single = Detector(DetectorOptions(classes=("person",), tiling="off")).detect(people)
    assert len(single) <= single.data["class_name"].size <= 20
    assert sum(item["label"] == "person" for item in as_dicts(detector.detect(people))) == cols * rows


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
@pytest.mark.parametrize("where", [(0.1, 0.2), (0.45, 0.5), (0.7, 0.6)])
def test_a_small_walker_on_a_large_frame(
    detector: Detector, runner_frame: np.ndarray, size: tuple[int, int], where: tuple[float, float]
) -> None:
    """The runner 100 px tall on a plain road of a 720p or 1080p frame: one pass cannot see him (the
    frame is squashed to 300×300), the default tiling does, wherever he is."""
    width, height = size
    road = np.full((height, width, 3), (90, 100, 105), np.uint8)
    x, y = int(where[0] * width), int(where[1] * height)
    road[y : y + 100, x : x + 57] = cv2.resize(
        runner_frame[20:320, 214:384], (57, 100), interpolation=cv2.INTER_AREA
    )
    assert not Detector(DetectorOptions(tiling="off")).detect(road).data["class_name"].size
    people = [item for item in as_dicts(detector.detect(road)) if item["label"] == "person"]
    assert len(people) == 1
    x1, y1, x2, y2 = people[0]["box"]
    assert x - 10 <= x1 < x2 <= x + 67 and y - 10 <= y1 < y2 <= y + 110
