"""The camera grid (issue 13, scope 5): a cameras file as live views with counts; click a camera
to edit its lines and zones; save back to the same file.

Real frames with real crossings (the PETS clip and its MOT15 ground truth replayed by frame
content, as in tests/test_service.py) through the real service, batching and pipelines; only the
forward pass is replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gui_support import HashReplay, drag, widget_point
from PyQt6.QtCore import Qt
from test_service import _first_frames

from app.cameras import CamerasFileError, load_cameras_file, save_camera_counting
from app.counting import CountingConfig, LineSpec
from app.gui.camera_grid import CameraGridWindow, format_counts
from app.gui.video_view import EditMode
from app.service import Service
from app.sinks import read_events

FRAMES = 150  # people cross both lines in the first 150 PETS frames

CAMERAS_YAML = """\
# two views of the square
detector:
  max_batch: 4
  max_wait_ms: 20
outputs:
  events: events.jsonl   # every camera's events
cameras:
  - id: a    # the horizontal line
    source: {source}
    normalized: false
    lines:
      - {{name: h, start: [0, 180], end: [480, 180]}}
  - id: b
    source: {source}
    zone_file: b-zones.yaml
    tracker: {{name: sort, max_age: 3}}
"""
B_ZONES = "normalized: false\nlines:\n  - {name: v, start: [240, 0], end: [240, 360]}\n"


@pytest.fixture(scope="module")
def replay() -> HashReplay:
    return HashReplay(delay_s=0.02)


@pytest.fixture(scope="module")
def pets_frames(tmp_path_factory) -> Path:  # noqa: ANN001
    return _first_frames(tmp_path_factory.mktemp("pets"), FRAMES)


@pytest.fixture
def cameras_file(tmp_path: Path, pets_frames: Path) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(CAMERAS_YAML.format(source=pets_frames), encoding="utf-8")
    (tmp_path / "b-zones.yaml").write_text(B_ZONES, encoding="utf-8")
    return path


@pytest.fixture
def make_grid(qtbot, replay: HashReplay):  # noqa: ANN001, ANN201
    windows: list[CameraGridWindow] = []

    def make() -> CameraGridWindow:
        window = CameraGridWindow(lambda cameras, sinks: Service(cameras, detector=replay, frame_sinks=sinks))
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown_after_event_loop(30)


def _finished(window: CameraGridWindow) -> bool:
    service = window.runner.service
    return service is not None and all(c["state"] == "finished" for c in service.status()["cameras"])


def test_every_camera_shows_its_live_view_and_its_counts(qtbot, make_grid, cameras_file: Path):  # noqa: ANN001
    window = make_grid()
    assert window.open_cameras_file(cameras_file)
    assert list(window.cells) == ["a", "b"]
    qtbot.waitUntil(lambda: all(cell.frames_shown > 0 for cell in window.cells.values()), timeout=30_000)
    qtbot.waitUntil(lambda: _finished(window), timeout=60_000)
    window.refresh_status()
    for status in window.runner.service.status()["cameras"]:
        cell = window.cells[status["id"]]
        assert cell.counts.text() == format_counts(status["counts"])
        assert "finished" in cell.title.text()
        line = next(iter(status["counts"]["lines"].values()))
        assert line["in"] + line["out"] > 0, status  # people crossed: the numbers shown are real counts
    assert "h: " in window.cells["a"].counts.text() and "v: " in window.cells["b"].counts.text()
    image = window.cells["a"].picture.image
    assert image is not None and (image.width(), image.height()) == (480, 360)  # small clips stay full size


def test_click_a_camera_draw_a_line_it_counts_at_once_and_saves_back(qtbot, make_grid, cameras_file: Path):  # noqa: ANN001
    window = make_grid()
    window.open_cameras_file(cameras_file)
    cell = window.cells["a"]
    qtbot.waitUntil(lambda: cell.frames_shown > 0, timeout=30_000)
    qtbot.mouseClick(cell, Qt.MouseButton.LeftButton)
    editor = window.editor
    assert editor is not None and editor.isVisible() and editor.camera_id == "a"
    assert editor.view.shapes.names == ("h",)           # the camera's current line, in frame pixels
    assert editor.view.shapes.handles("h") == ((0.0, 180.0), (480.0, 180.0))
    editor.view.select("h")
    editor.view.delete_selected()
    editor.view.set_mode(EditMode.DRAW_LINE)             # a vertical line, drawn with the mouse
    drag(qtbot, editor.view, widget_point(editor.view, (300, 10)), widget_point(editor.view, (300, 350)))
    assert editor.view.shapes.names == ("line1",)
    editor.accept()
    assert window.runner.service.camera("a").spec.counting[0].lines[0].name == "line1"  # applied live
    assert window.windowTitle().endswith(" *") and window.save_action.isEnabled()

    assert window.save()
    text = cameras_file.read_text(encoding="utf-8")
    assert "# two views of the square" in text and "# every camera's events" in text  # comments kept
    saved = load_cameras_file(cameras_file)
    (config,) = saved.camera("a").counting
    assert config.normalized and [line.name for line in config.lines] == ["line1"]
    x0, y0 = config.lines[0].start
    assert abs(x0 - 300 / 480) < 0.01 and abs(y0 - 10 / 360) < 0.01
    assert [line.name for c in saved.camera("b").counting for line in c.lines] == ["v"]
    assert "zone_file: b-zones.yaml" in text             # camera b was not edited
    assert not window.windowTitle().endswith(" *")

    qtbot.waitUntil(lambda: _finished(window), timeout=60_000)
    window.close()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    events = read_events(cameras_file.parent / "events.jsonl")
    lines_of_a = [e.zone for e in events if e.camera_id == "a"]
    assert "line1" in lines_of_a                          # counted on the new line once applied
    assert lines_of_a == sorted(lines_of_a, key=lambda name: name == "line1")  # h before the edit, line1 after
    assert {e.zone for e in events if e.camera_id == "b"} == {"v"}


def test_a_zone_file_camera_saves_into_its_zone_file(qtbot, make_grid, cameras_file: Path):  # noqa: ANN001
    window = make_grid()
    window.open_cameras_file(cameras_file)
    qtbot.waitUntil(lambda: window.cells["b"].frames_shown > 0, timeout=30_000)
    editor = window.edit_camera("b")
    assert editor is not None and editor.view.shapes.names == ("v",)
    editor.view.shapes.translate("v", 20, 0)
    editor.accept()
    assert window.save()
    assert "zone_file: b-zones.yaml" in cameras_file.read_text(encoding="utf-8")
    (config,) = load_cameras_file(cameras_file).camera("b").counting
    assert config.normalized and config.lines[0].start == pytest.approx((260 / 480, 0.0))


def test_a_bad_cameras_file_is_named_and_nothing_starts(qtbot, make_grid, tmp_path: Path):  # noqa: ANN001
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - id: gate\n    source: x.mp4\n    fps_cap: -1\n", encoding="utf-8")
    window = make_grid()
    assert not window.open_cameras_file(path)
    assert "camera 'gate': fps_cap" in window.last_error
    assert not window.cells and not window.runner.busy


def test_closing_the_grid_stops_the_cameras_and_finishes_the_events_file(qtbot, make_grid, cameras_file: Path):  # noqa: ANN001
    window = make_grid()
    window.open_cameras_file(cameras_file)
    qtbot.waitUntil(lambda: window.runner.service is not None and window.cells["a"].frames_shown > 3, timeout=30_000)
    service = window.runner.service
    window.close()                                    # never waits: stops, then closes
    assert window.runner.busy
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert {c["state"] for c in service.status()["cameras"]} == {"stopped"}
    frames = {c["id"]: c["frames"] for c in service.status()["cameras"]}
    assert all(0 < n < FRAMES for n in frames.values())  # stopped mid-clip
    read_events(cameras_file.parent / "events.jsonl")    # complete and readable


def test_the_main_window_opens_a_grid_and_stops_its_cameras_before_closing(qtbot, tmp_path: Path, replay,  # noqa: ANN001
                                                                           cameras_file: Path):
    from app.gui.main_window import MainWindow

    window = MainWindow(settings_path=tmp_path / "settings.json")
    qtbot.addWidget(window)
    window.show()
    grid = window.open_cameras_file(cameras_file, lambda cameras, sinks: Service(cameras, detector=replay,
                                                                                  frame_sinks=sinks))
    assert window.grids == [grid] and grid.isVisible()
    qtbot.waitUntil(lambda: grid.cells["a"].frames_shown > 0, timeout=30_000)
    service = grid.runner.service
    window.close()
    assert window.isVisible()                         # waits for the grid's cameras, without blocking
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert {c["state"] for c in service.status()["cameras"]} <= {"stopped", "finished"}
    assert not window.grids                            # the grid closed and was deleted


# ------------------------------------------------------------------------------ the writer, no Qt
def test_saving_keeps_the_rest_of_the_file_and_refuses_a_bad_edit(tmp_path: Path):
    path = tmp_path / "cameras.yaml"
    original = "# top\ncameras:\n  - id: gate  # front\n    source: rtsp://h/s\n  - id: yard\n    source: '0'\n"
    path.write_text(original, encoding="utf-8")
    line = CountingConfig(lines=(LineSpec("road", (0.0, 0.5), (1.0, 0.5)),), normalized=True)
    assert save_camera_counting(path, {"gate": line}) == []
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# top\n") and "- id: gate  # front" in text and "source: '0'" in text
    assert load_cameras_file(path).camera("gate").counting == (line,)
    with pytest.raises(CamerasFileError, match="camera 'nope': not in the file"):
        save_camera_counting(path, {"nope": line})
    pixels = CountingConfig(lines=(LineSpec("road", (0.0, 5.0), (10.0, 5.0)),), normalized=False)
    before = path.read_text(encoding="utf-8")
    save_camera_counting(path, {"gate": pixels, "yard": None})
    assert load_cameras_file(path).camera("gate").counting == (pixels,)
    assert load_cameras_file(path).camera("yard").counting == ()
    assert path.read_text(encoding="utf-8") != before


def test_saving_inline_drops_a_zone_file_the_camera_also_had_and_says_so(tmp_path: Path):
    (tmp_path / "z.json").write_text(json.dumps({"lines": [{"name": "z", "start": [0, 1], "end": [5, 1]}]}))
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps({"cameras": [{"id": "c", "source": "0", "zone_file": "z.json",
                                             "lines": [{"name": "i", "start": [0, 2], "end": [5, 2]}],
                                             "normalized": False}]}))
    merged = CountingConfig.merged(load_cameras_file(path).camera("c").counting, 10, 10)
    assert [line.name for line in merged.lines] == ["i", "z"]
    (note,) = save_camera_counting(path, {"c": merged})
    assert "zone_file z.json was dropped" in note
    data = json.loads(path.read_text())
    assert "zone_file" not in data["cameras"][0] and [x["name"] for x in data["cameras"][0]["lines"]] == ["i", "z"]
    assert (tmp_path / "z.json").exists()


def test_to_normalized_is_the_inverse_of_to_pixels_and_refuses_points_outside_the_frame():
    pixels = CountingConfig(lines=(LineSpec("l", (48.0, 36.0), (480.0, 0.0)),), normalized=False)
    normalized = pixels.to_normalized(480, 360)
    assert normalized.normalized and normalized.lines[0].start == pytest.approx((0.1, 0.1))
    assert normalized.to_pixels(480, 360).lines[0].start == pytest.approx((48.0, 36.0))
    outside = CountingConfig(lines=(LineSpec("l", (-1.0, 0.0), (10.0, 0.0)),), normalized=False)
    with pytest.raises(ValueError, match="outside the 480x360 frame"):
        outside.to_normalized(480, 360)


def test_gui_refuses_cameras_with_a_source():
    from app.gui import main

    assert main(["--cameras", "cameras.yaml", "clip.mp4"]) == 2
