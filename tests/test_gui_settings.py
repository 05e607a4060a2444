"""GUI settings: typed schema, validation, versioned file in the user config dir; the tracker part
is generic over tracker.registry (settings, file and dialog pick up a newly registered tracker)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from app.gui.settings import (
    MAX_RECENT_SOURCES,
    SETTINGS_VERSION,
    GuiSettings,
    SettingsError,
    TrackerSettings,
    default_settings_path,
    load_settings,
    save_settings,
    window_state_path,
)
from tracker.errors import InvalidTrackerConfigError
from tracker.registry import TRACKERS, TrackerEntry, make_tracker, tracker_parameters

SORT_TUNED = {"max_age": 3, "min_hits": 2, "iou_threshold": 0.25, "class_aware": True}


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    settings = GuiSettings(
        weights="/models/best.safetensors", img_size=320, conf_thres=0.4, iou_thres=0.5,
        classes=("person", "2"), device="cpu",
        tracker=TrackerSettings(kind="sort", params_by_kind={"sort": SORT_TUNED, "bytetrack": {"track_thresh": 0.6}}),
        record_output=True, output_dir="/tmp/rec", pace_files=True,
        recent_sources=("rtsp://cam/1", "a.mp4"), zone_file="zones.yaml",
    )
    path = tmp_path / "deep" / "settings.json"
    save_settings(settings, path)
    assert load_settings(path) == settings
    document = json.loads(path.read_text())
    assert document["version"] == SETTINGS_VERSION
    assert document["settings"]["tracker"] == {
        "kind": "sort",
        "bytetrack": {"track_thresh": 0.6, "match_thresh": 0.8, "track_buffer": 30, "class_aware": False},
        "sort": SORT_TUNED,
    }
    assert not (tmp_path / "deep" / "settings.json.tmp").exists()


def test_missing_file_gives_defaults_and_missing_keys_take_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.json") == GuiSettings()
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 2, "settings": {"conf_thres": 0.6, "tracker": {"kind": "sort"}}}))
    assert load_settings(path) == GuiSettings(conf_thres=0.6, tracker=TrackerSettings(kind="sort"))
    path.write_text(json.dumps({"version": 2, "settings": {"tracker": {"sort": {"min_hits": 5}}}}))
    tracker = load_settings(path).tracker
    assert tracker.kind == "bytetrack"
    assert tracker.params_by_kind["sort"] == {"max_age": 1, "min_hits": 5, "iou_threshold": 0.3, "class_aware": False}


def test_version_1_flat_tracker_keys_are_read_under_the_registry_names(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    flat = {"kind": "sort", "track_thresh": 0.6, "match_thresh": 0.9, "track_buffer_frames": 60,
            "max_age_frames": 5, "min_hits": 2, "iou_threshold": 0.2}
    path.write_text(json.dumps({"version": 1, "settings": {"conf_thres": 0.3, "tracker": flat}}))
    loaded = load_settings(path)
    assert loaded.conf_thres == 0.3
    assert loaded.tracker == TrackerSettings(kind="sort", params_by_kind={
        "bytetrack": {"track_thresh": 0.6, "match_thresh": 0.9, "track_buffer": 60},
        "sort": {"max_age": 5, "min_hits": 2, "iou_threshold": 0.2},
    })
    assert loaded.tracker.params() == {"max_age": 5, "min_hits": 2, "iou_threshold": 0.2, "class_aware": False}
    save_settings(loaded, path)  # written back in the current layout
    document = json.loads(path.read_text())
    assert document["version"] == SETTINGS_VERSION == 2
    assert document["settings"]["tracker"]["bytetrack"]["track_buffer"] == 60
    assert "max_age_frames" not in document["settings"]["tracker"]
    assert load_settings(path) == loaded

    path.write_text(json.dumps({"version": 1, "settings": {"tracker": {"track_buffer_frames": 45}}}))
    partial = load_settings(path).tracker
    assert partial.kind == "bytetrack" and partial.params() == {
        "track_thresh": 0.5, "match_thresh": 0.8, "track_buffer": 45, "class_aware": False}


V1 = '{"version": 1, "settings": %s}'
V2 = '{"version": 2, "settings": %s}'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read the settings file"),
        ('{"settings": {}}', "'version' must be an integer"),
        ('{"version": 1}', 'expected {"version"'),
        ('{"version": 99, "settings": {}}', "newer yolov7-track"),
        (V2 % '{"confidence": 0.5}', "unknown setting 'confidence'"),
        (V2 % '{"conf_thres": 1.5}', "conf_thres must be a number in [0, 1]"),
        (V2 % '{"img_size": 100}', "multiple of 32"),
        (V2 % '{"classes": "person"}', "classes must be a list of strings"),
        (V2 % '{"record_output": "yes"}', "record_output must be true or false"),
        # tracker, current layout
        (V2 % '{"tracker": "sort"}', "tracker must be a mapping, got str"),
        (V2 % '{"tracker": {"kind": "deepsort"}}', "tracker.kind must be one of bytetrack, sort, got 'deepsort'"),
        (V2 % '{"tracker": {"deepsort": {}}}', "unknown setting tracker.'deepsort'; known: kind, bytetrack, sort"),
        (V2 % '{"tracker": {"max_age_frames": 3}}', "unknown setting tracker.'max_age_frames'"),
        (V2 % '{"tracker": {"sort": 3}}', "tracker.sort must be a mapping of parameter -> value"),
        (V2 % '{"tracker": {"sort": {"age": 3}}}', "unknown setting tracker.sort.'age'; known: max_age, min_hits"),
        (V2 % '{"tracker": {"sort": {"max_age": 2.5}}}', "tracker.sort.max_age must be an integer, got 2.5"),
        (V2 % '{"tracker": {"sort": {"min_hits": true}}}', "tracker.sort.min_hits must be an integer, got True"),
        (V2 % '{"tracker": {"bytetrack": {"track_thresh": "high"}}}',
         "tracker.bytetrack.track_thresh must be a number"),
        (V2 % '{"tracker": {"bytetrack": {"class_aware": 1}}}', "tracker.bytetrack.class_aware must be true or false"),
        # ranges are the tracker configs' own, refused with their message
        (V2 % '{"tracker": {"sort": {"min_hits": -1}}}', "tracker.sort: min_hits must be an integer >= 0, got -1"),
        (V2 % '{"tracker": {"bytetrack": {"track_thresh": 0.05}}}',
         "tracker.bytetrack: track_thresh must lie in (0.1, 1.0]"),
        # tracker, version 1 layout
        (V1 % '{"tracker": {"kind": "sort", "age": 3}}', "unknown setting tracker.'age'"),
        (V1 % '{"tracker": {"sort": {"max_age": 3}}}', "unknown setting tracker.'sort'"),
        (V1 % '{"tracker": {"kind": "deepsort"}}', "tracker.kind must be one of"),
        (V1 % '{"tracker": {"iou_threshold": 2}}', "tracker.sort: iou_threshold must lie in [0.0, 1.0], got 2.0"),
    ],
)
def test_invalid_files_are_refused_naming_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_recent_sources_newest_first_unique_and_bounded() -> None:
    settings = GuiSettings()
    for i in range(MAX_RECENT_SOURCES + 3):
        settings = settings.with_recent_source(f"clip{i}.mp4")
    settings = settings.with_recent_source("clip5.mp4")
    assert settings.recent_sources[0] == "clip5.mp4"
    assert len(settings.recent_sources) == MAX_RECENT_SOURCES
    assert len(set(settings.recent_sources)) == MAX_RECENT_SOURCES


def test_default_path_follows_xdg_config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_settings_path() == tmp_path / "xdg" / "yolov7-track" / "settings.json"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_settings_path() == tmp_path / "home" / ".config" / "yolov7-track" / "settings.json"
    assert window_state_path(default_settings_path()).name == "window.ini"


def test_recording_dir_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOLOV7_TRACK_OUTPUT_DIR")  # set by conftest for every test
    assert GuiSettings().recording_dir() == Path.home() / "Videos" / "yolov7-track"
    assert replace(GuiSettings(), output_dir="~/rec").recording_dir() == Path.home() / "rec"
    monkeypatch.setenv("YOLOV7_TRACK_OUTPUT_DIR", "/srv/counts")
    assert GuiSettings().recording_dir() == Path("/srv/counts")
    assert replace(GuiSettings(), output_dir="~/rec").recording_dir() == Path.home() / "rec"


def test_tracker_settings_hold_every_registered_tracker_with_registry_defaults() -> None:
    settings = TrackerSettings()
    assert settings.kind == "bytetrack"
    assert list(settings.params_by_kind) == list(TRACKERS)
    for name in TRACKERS:
        assert settings.params_by_kind[name] == {p: default for p, (_, default) in tracker_parameters(name).items()}
    assert settings.params() == {"track_thresh": 0.5, "match_thresh": 0.8, "track_buffer": 30, "class_aware": False}

    tuned = TrackerSettings(kind="sort", params_by_kind={"sort": {"iou_threshold": 1}})
    assert tuned.params()["iou_threshold"] == 1.0 and isinstance(tuned.params()["iou_threshold"], float)
    assert tuned == TrackerSettings(kind="sort", params_by_kind={"sort": {"iou_threshold": 1.0}})
    assert hash(tuned) == hash(TrackerSettings(kind="sort", params_by_kind={"sort": {"iou_threshold": 1.0}}))
    assert tuned != TrackerSettings(kind="bytetrack", params_by_kind={"sort": {"iou_threshold": 1.0}})
    with pytest.raises(TypeError):
        tuned.params_by_kind["sort"]["min_hits"] = 9  # type: ignore[index]
    changed = tuned.params()
    changed["min_hits"] = 9  # params() is a copy
    assert tuned.params()["min_hits"] == 3


@pytest.mark.parametrize(
    ("settings", "kind", "expected"),
    [
        (TrackerSettings(), "ByteTrack", {"track_thresh": 0.5, "match_thresh": 0.8, "track_buffer": 30}),
        (TrackerSettings(kind="sort", params_by_kind={"sort": SORT_TUNED}), "SORT", SORT_TUNED),
    ],
)
def test_params_build_the_tracker_through_the_registry(settings: TrackerSettings, kind: str, expected: dict) -> None:
    tracker = make_tracker(settings.kind, settings.params(), frame_rate=25.0)
    assert type(tracker).__name__ == kind
    assert {name: getattr(tracker.config, name) for name in expected} == expected
    assert tracker.config.frame_rate == 25.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "deepsort"}, "tracker.kind must be one of bytetrack, sort"),
        ({"kind": None}, "tracker.kind must be one of"),
        ({"params_by_kind": [("sort", {})]}, "must be a mapping of tracker -> parameters"),
        ({"params_by_kind": {"deepsort": {}}}, "unknown setting tracker.'deepsort'"),
        ({"params_by_kind": {"sort": {"max_age_frames": 3}}}, "unknown setting tracker.sort.'max_age_frames'"),
        ({"params_by_kind": {"bytetrack": {"match_thresh": float("nan")}}},
         "tracker.bytetrack.match_thresh must be a number"),
        ({"params_by_kind": {"bytetrack": {"match_thresh": 0.0}}},
         "tracker.bytetrack: match_thresh must lie in (0.0, 1.0]"),
    ],
)
def test_invalid_tracker_settings_are_refused_naming_the_setting(kwargs: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        TrackerSettings(**kwargs)
    assert message in str(info.value)


# ------------------------------------------------------------------------------ dialog
def _dialog(qtbot, settings: GuiSettings):  # noqa: ANN001, ANN202
    from app.gui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    return dialog


def _label(dialog, name: str, param: str) -> str:  # noqa: ANN001
    field = dialog.tracker_fields[name][param]
    page = dialog.tracker_pages.widget(list(TRACKERS).index(name))
    return page.layout().labelForField(field).text()


def test_dialog_has_one_page_per_registered_tracker_built_from_its_parameters(qtbot) -> None:  # noqa: ANN001
    from PyQt6.QtCore import Qt
    from PyQt6.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox

    settings = GuiSettings(tracker=TrackerSettings(kind="sort", params_by_kind={"sort": SORT_TUNED}))
    dialog = _dialog(qtbot, settings)
    combo = dialog.tracker_kind
    assert [combo.itemText(i) for i in range(combo.count())] == list(TRACKERS)
    assert [combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())] == \
        [entry.summary for entry in TRACKERS.values()]
    assert dialog.tracker_pages.count() == len(TRACKERS)
    assert combo.currentText() == "sort" and dialog.tracker_pages.currentIndex() == list(TRACKERS).index("sort")
    assert combo.toolTip() == TRACKERS["sort"].summary
    widget_of = {bool: QCheckBox, int: QSpinBox, float: QDoubleSpinBox}
    for name in TRACKERS:
        assert list(dialog.tracker_fields[name]) == list(tracker_parameters(name))
        for param, (kind, _) in tracker_parameters(name).items():
            assert type(dialog.tracker_fields[name][param]) is widget_of[kind]
            assert _label(dialog, name, param) == f"{param}:"
    sort_fields = dialog.tracker_fields["sort"]
    assert (sort_fields["max_age"].value(), sort_fields["min_hits"].value(), sort_fields["class_aware"].isChecked()) \
        == (3, 2, True)
    assert sort_fields["iou_threshold"].value() == pytest.approx(0.25)
    assert dialog.read_form() == settings  # an untouched form gives the settings back

    combo.setCurrentText("bytetrack")
    assert dialog.tracker_pages.currentIndex() == list(TRACKERS).index("bytetrack")
    assert combo.toolTip() == TRACKERS["bytetrack"].summary
    dialog.tracker_fields["bytetrack"]["track_buffer"].setValue(90)
    dialog.tracker_fields["bytetrack"]["class_aware"].setChecked(True)
    dialog.tracker_fields["sort"]["max_age"].setValue(7)  # kept, though not the selected tracker
    dialog.accept()
    tracker = dialog.settings().tracker
    assert tracker.kind == "bytetrack"
    assert tracker.params() == {"track_thresh": 0.5, "match_thresh": 0.8, "track_buffer": 90, "class_aware": True}
    assert tracker.params_by_kind["sort"] == {**SORT_TUNED, "max_age": 7}


def test_dialog_reports_a_value_the_tracker_config_refuses(qtbot) -> None:  # noqa: ANN001
    dialog = _dialog(qtbot, GuiSettings())
    dialog.tracker_fields["bytetrack"]["track_thresh"].setValue(0.05)
    dialog.accept()
    assert "tracker.bytetrack: track_thresh must lie in (0.1, 1.0]" in dialog.error_label.text()
    assert dialog.settings() == GuiSettings() and dialog.result() == 0


# ------------------------------------------------------------------------------ a new tracker
@dataclass(frozen=True)
class _FakeConfig:
    """A tracker config of the registry's shape: typed fields with defaults, ``frame_rate`` from
    the source, ranges checked at construction."""

    gate_px: float = 12.5
    patience_frames: int = 4
    use_colour: bool = False
    frame_rate: float = 30.0

    def __post_init__(self) -> None:
        if not self.gate_px > 0:
            raise InvalidTrackerConfigError(f"gate_px must be > 0, got {self.gate_px!r}")


class _FakeTracker:
    def __init__(self, **params: Any) -> None:
        self.config = _FakeConfig(**params)


@pytest.fixture
def fake_tracker(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers tracker ``"fake"``: the one change adding a tracker needs."""
    monkeypatch.setitem(TRACKERS, "fake", TrackerEntry("fake", _FakeConfig, _FakeTracker, "Fake: a test tracker"))
    return "fake"


def test_a_newly_registered_tracker_reaches_settings_file_and_dialog(  # noqa: ANN001
        qtbot, fake_tracker: str, tmp_path: Path) -> None:
    from PyQt6.QtWidgets import QCheckBox, QDoubleSpinBox, QSpinBox

    from app.assembly import build_tracker
    from app.gui.worker import tracker_choice

    # settings: defaults from the registry, validation by the tracker's config
    assert GuiSettings().tracker.params_by_kind["fake"] == {"gate_px": 12.5, "patience_frames": 4, "use_colour": False}
    with pytest.raises(SettingsError, match=r"tracker\.fake: gate_px must be > 0, got 0\.0"):
        TrackerSettings(kind="fake", params_by_kind={"fake": {"gate_px": 0}})
    with pytest.raises(SettingsError, match=r"unknown setting tracker\.fake\.'gate'"):
        TrackerSettings(kind="fake", params_by_kind={"fake": {"gate": 3.0}})

    # dialog: an entry with the summary, a page with one typed field per parameter
    dialog = _dialog(qtbot, GuiSettings())
    index = dialog.tracker_kind.findText("fake")
    assert index == len(TRACKERS) - 1 and dialog.tracker_pages.count() == len(TRACKERS)
    fields = dialog.tracker_fields["fake"]
    assert [(param, type(widget)) for param, widget in fields.items()] == \
        [("gate_px", QDoubleSpinBox), ("patience_frames", QSpinBox), ("use_colour", QCheckBox)]
    assert [_label(dialog, "fake", param) for param in fields] == ["gate_px:", "patience_frames:", "use_colour:"]
    assert (fields["gate_px"].value(), fields["patience_frames"].value(), fields["use_colour"].isChecked()) \
        == (12.5, 4, False)
    dialog.tracker_kind.setCurrentIndex(index)
    assert dialog.tracker_pages.currentIndex() == index
    assert dialog.tracker_kind.toolTip() == "Fake: a test tracker"
    fields["gate_px"].setValue(0.0)
    dialog.accept()
    assert "tracker.fake: gate_px must be > 0" in dialog.error_label.text()
    fields["gate_px"].setValue(20.25)
    fields["patience_frames"].setValue(9)
    fields["use_colour"].setChecked(True)
    dialog.accept()
    settings = dialog.settings()
    expected = {"gate_px": 20.25, "patience_frames": 9, "use_colour": True}
    assert settings.tracker.kind == "fake" and settings.tracker.params() == expected

    # file: its own section, read back equal
    path = tmp_path / "settings.json"
    save_settings(settings, path)
    assert json.loads(path.read_text())["settings"]["tracker"]["fake"] == expected
    assert load_settings(path) == settings

    # params(): what the registry and the GUI worker build the tracker from
    built = make_tracker("fake", settings.tracker.params(), frame_rate=12.0)
    assert isinstance(built, _FakeTracker)
    assert built.config == _FakeConfig(gate_px=20.25, patience_frames=9, use_colour=True, frame_rate=12.0)
    from_worker = build_tracker(tracker_choice(settings.tracker), source_fps=None)
    assert isinstance(from_worker, _FakeTracker) and from_worker.config.gate_px == 20.25
