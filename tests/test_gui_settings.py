"""GUI settings: typed schema, validation, versioned file in the user config dir."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

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


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    settings = GuiSettings(
        weights="/models/best.safetensors", img_size=320, conf_thres=0.4, iou_thres=0.5,
        classes=("person", "2"), device="cpu",
        tracker=TrackerSettings(kind="sort", max_age_frames=3, min_hits=2, iou_threshold=0.25),
        record_output=True, output_dir="/tmp/rec", pace_files=True,
        recent_sources=("rtsp://cam/1", "a.mp4"), zone_file="zones.yaml",
    )
    path = tmp_path / "deep" / "settings.json"
    save_settings(settings, path)
    assert load_settings(path) == settings
    document = json.loads(path.read_text())
    assert document["version"] == SETTINGS_VERSION
    assert document["settings"]["tracker"]["kind"] == "sort"
    assert not (tmp_path / "deep" / "settings.json.tmp").exists()


def test_missing_file_gives_defaults_and_missing_keys_take_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "none.json") == GuiSettings()
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"version": 1, "settings": {"conf_thres": 0.6, "tracker": {"kind": "sort"}}}))
    loaded = load_settings(path)
    assert loaded == GuiSettings(conf_thres=0.6, tracker=TrackerSettings(kind="sort"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read the settings file"),
        ('{"settings": {}}', "'version' must be an integer"),
        ('{"version": 1}', 'expected {"version"'),
        ('{"version": 99, "settings": {}}', "newer yolov7-track"),
        ('{"version": 1, "settings": {"confidence": 0.5}}', "unknown setting 'confidence'"),
        ('{"version": 1, "settings": {"tracker": {"kind": "sort", "age": 3}}}', "unknown setting tracker.'age'"),
        ('{"version": 1, "settings": {"conf_thres": 1.5}}', "conf_thres must be a number in [0, 1]"),
        ('{"version": 1, "settings": {"img_size": 100}}', "multiple of 32"),
        ('{"version": 1, "settings": {"classes": "person"}}', "classes must be a list of strings"),
        ('{"version": 1, "settings": {"tracker": {"kind": "deepsort"}}}', "tracker.kind must be one of"),
        ('{"version": 1, "settings": {"record_output": "yes"}}', "record_output must be true or false"),
        ('{"version": 1, "settings": {"tracker": {"min_hits": 0}}}', "tracker.min_hits must be an integer >= 1"),
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
