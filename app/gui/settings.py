"""Typed, versioned settings of the desktop GUI, kept in a JSON file in the user's config folder.

No Qt here (napari keeps its settings schema free of the toolkit the same way), so the schema is
testable on its own. The window's geometry is not part of it: Qt's ``QSettings`` keeps that,
in an INI file next to this one (see :func:`window_state_path`).

File layout (``$XDG_CONFIG_HOME/yolov7-track/settings.json`` on Linux)::

    {"version": 1, "settings": {"weights": "yolov7-tiny-traffic", "conf_thres": 0.25, ...,
                                "tracker": {"kind": "bytetrack", "track_thresh": 0.5, ...}}}

Keys missing from the file take their defaults (a file written by an older release of the same
version stays readable); unknown keys, wrong types and values out of range raise
:class:`SettingsError` naming the file and the key, so a typo never falls back silently.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "APP_DIR_NAME",
    "MAX_RECENT_SOURCES",
    "SETTINGS_VERSION",
    "TRACKER_KINDS",
    "GuiSettings",
    "SettingsError",
    "TrackerSettings",
    "default_settings_path",
    "load_settings",
    "save_settings",
    "window_state_path",
]

#: Version of the file layout; bump it (and add a migration to ``_MIGRATIONS``) when a key
#: changes meaning or is renamed.
SETTINGS_VERSION = 1
APP_DIR_NAME = "yolov7-track"
#: Overrides the default folder of recordings and events files (an empty ``output_dir``).
OUTPUT_DIR_ENV_VAR = "YOLOV7_TRACK_OUTPUT_DIR"
SETTINGS_FILE_NAME = "settings.json"
WINDOW_STATE_FILE_NAME = "window.ini"
#: Entries kept in the recent-sources list.
MAX_RECENT_SOURCES = 10
TRACKER_KINDS = ("bytetrack", "sort")
# detector.precision.PRECISIONS / BACKENDS (not imported: torch is slow to load; a test keeps them equal)
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BACKEND_CHOICES = ("torch", "onnxruntime", "openvino")


class SettingsError(Yolov7TrackError, ValueError):
    """A settings value or file is invalid; the message names the key (and file) and the fix."""


# ------------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class TrackerSettings:
    """Which tracker runs and its parameters.

    Attributes:
        kind: ``"bytetrack"`` (:class:`tracker.ByteTrack`) or ``"sort"`` (:class:`tracker.SORT`).
        track_thresh: ByteTrack: detections at or above this confidence start and extend tracks
            (Zhang et al., "ByteTrack", ECCV 2022, Algorithm 1 ``tau_high``), in [0, 1].
        match_thresh: ByteTrack: IoU-cost threshold of the first association, in [0, 1].
        track_buffer_frames: ByteTrack: frames a lost track is kept (at 30 fps; scaled by the
            source's frame rate), >= 1.
        max_age_frames: SORT: frames a track survives without a match (Bewley et al., "Simple
            Online and Realtime Tracking", ICIP 2016: ``max_age = 1``), >= 1.
        min_hits: SORT: matches before a track is reported, >= 1.
        iou_threshold: SORT: minimum IoU of a match, in [0, 1].
    """

    kind: str = "bytetrack"
    track_thresh: float = 0.5
    match_thresh: float = 0.8
    track_buffer_frames: int = 30
    max_age_frames: int = 1
    min_hits: int = 3
    iou_threshold: float = 0.3

    def __post_init__(self) -> None:
        if self.kind not in TRACKER_KINDS:
            raise SettingsError(f"tracker.kind must be one of {', '.join(TRACKER_KINDS)}, got {self.kind!r}")
        for name in ("track_thresh", "match_thresh", "iou_threshold"):
            _require_unit_interval(f"tracker.{name}", getattr(self, name))
        for name in ("track_buffer_frames", "max_age_frames", "min_hits"):
            _require_int(f"tracker.{name}", getattr(self, name), minimum=1)

    def params(self) -> dict[str, object]:
        """The parameters of :attr:`kind` for :func:`tracker.registry.make_tracker`."""
        if self.kind == "bytetrack":
            return {"track_thresh": self.track_thresh, "match_thresh": self.match_thresh,
                    "track_buffer": self.track_buffer_frames}
        return {"max_age": self.max_age_frames, "min_hits": self.min_hits, "iou_threshold": self.iou_threshold}


@dataclass(frozen=True)
class GuiSettings:
    """Everything the GUI remembers between sessions (except window geometry).

    Attributes:
        weights: detector weights: a bundled model (``"yolov7-tiny-traffic"``, the default,
            offline), a registry name (``"yolov7-tiny"``, downloaded once) or a ``.pt`` /
            ``.safetensors`` path.
        img_size: detector input size in pixels (multiple of 32), or ``None`` for the model's.
        conf_thres: detection confidence threshold, in [0, 1].
        iou_thres: NMS IoU threshold, in [0, 1].
        classes: class filter: names (``"person"``) or ids (``"0"``); empty keeps every class.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        precision: model compute precision, ``"auto"`` (default: the fastest one proven accurate on
            this hardware), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (:class:`detector.DetectorConfig`).
        backend: inference runtime, ``"torch"`` (default), ``"onnxruntime"`` or ``"openvino"``.
        tracker: tracker choice and parameters.
        record_output: write the annotated video (tracks, lines, zones, counts) of each run.
        output_dir: folder of recorded videos; empty means ``~/Videos/yolov7-track``.
        pace_files: play video files at their own frame rate instead of as fast as they are
            processed (live sources are always real time).
        recent_sources: the latest sources opened (paths, URLs, webcam indices), newest first,
            at most :data:`MAX_RECENT_SOURCES`.
        zone_file: the zone file last loaded or saved (opened at start-up), or empty.
    """

    weights: str = "yolov7-tiny-traffic"
    img_size: int | None = None
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    classes: tuple[str, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    backend: str = "torch"
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    record_output: bool = False
    output_dir: str = ""
    pace_files: bool = False
    recent_sources: tuple[str, ...] = ()
    zone_file: str = ""

    def __post_init__(self) -> None:
        _require_str("weights", self.weights, allow_empty=False)
        if self.img_size is not None:
            _require_int("img_size", self.img_size, minimum=32)
            if self.img_size % 32:
                raise SettingsError(f"img_size must be a multiple of 32 (the model's stride), got {self.img_size}")
        _require_unit_interval("conf_thres", self.conf_thres)
        _require_unit_interval("iou_thres", self.iou_thres)
        object.__setattr__(self, "classes", _str_tuple("classes", self.classes))
        _require_str("device", self.device, allow_empty=False)
        _require_choice("precision", self.precision, PRECISION_CHOICES)
        _require_choice("backend", self.backend, BACKEND_CHOICES)
        if not isinstance(self.tracker, TrackerSettings):
            raise SettingsError(f"tracker must be a TrackerSettings, got {type(self.tracker).__name__}")
        for name in ("record_output", "pace_files"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _require_str("output_dir", self.output_dir, allow_empty=True)
        _require_str("zone_file", self.zone_file, allow_empty=True)
        recent = _str_tuple("recent_sources", self.recent_sources)
        object.__setattr__(self, "recent_sources", recent[:MAX_RECENT_SOURCES])

    def with_recent_source(self, spec: str) -> GuiSettings:
        """A copy with ``spec`` first in :attr:`recent_sources` (moved up if already there)."""
        recent = (spec, *(s for s in self.recent_sources if s != spec))
        return replace(self, recent_sources=recent[:MAX_RECENT_SOURCES])

    def recording_dir(self) -> Path:
        """Folder of recorded videos and of each run's events file: :attr:`output_dir`, else
        ``$YOLOV7_TRACK_OUTPUT_DIR``, else ``~/Videos/yolov7-track``."""
        if self.output_dir:
            return Path(self.output_dir).expanduser()
        override = os.environ.get(OUTPUT_DIR_ENV_VAR)
        return Path(override).expanduser() if override else Path.home() / "Videos" / APP_DIR_NAME

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples become lists)."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["recent_sources"] = list(self.recent_sources)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GuiSettings:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            SettingsError: an unknown key or an invalid value (the message names it).
        """
        _reject_unknown(data, cls, "")
        values = dict(data)
        tracker = values.get("tracker")
        if tracker is not None:
            if not isinstance(tracker, Mapping):
                raise SettingsError(f"tracker must be a mapping, got {type(tracker).__name__}")
            _reject_unknown(tracker, TrackerSettings, "tracker.")
            values["tracker"] = TrackerSettings(**tracker)
        for key in ("classes", "recent_sources"):
            if key in values:
                values[key] = _str_tuple(key, values[key])
        try:
            return cls(**values)
        except TypeError as exc:  # a value of a type the dataclass cannot take
            raise SettingsError(str(exc)) from exc


def _reject_unknown(data: Mapping[str, Any], schema: type, prefix: str) -> None:
    known = {f.name for f in fields(schema)}
    for key in data:
        if key not in known:
            raise SettingsError(f"unknown setting {prefix}{key!r}; known: {', '.join(sorted(known))}")


def _require_unit_interval(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be a number in [0, 1], got {value!r}")


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _require_str(name: str, value: object, allow_empty: bool) -> None:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise SettingsError(f"{name} must be a {'' if allow_empty else 'non-empty '}string, got {value!r}")


def _str_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{name} must be a list of strings, got {value!r}")
    return tuple(value)


# ------------------------------------------------------------------------------ files
def default_settings_path() -> Path:
    """``<user config dir>/yolov7-track/settings.json``.

    The config dir is ``$XDG_CONFIG_HOME`` (default ``~/.config``) on Linux and other Unix
    systems (XDG Base Directory Specification 0.8), ``%APPDATA%`` on Windows and
    ``~/Library/Application Support`` on macOS.
    """
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / APP_DIR_NAME / SETTINGS_FILE_NAME


def window_state_path(settings_path: Path) -> Path:
    """The ``QSettings`` INI file (window geometry, dock layout) beside ``settings_path``."""
    return Path(settings_path).with_name(WINDOW_STATE_FILE_NAME)


# Migrations from older file versions: ``{old_version: function(settings_dict) -> dict}``,
# each producing the layout of ``old_version + 1``. Version 1 is the first.
_MIGRATIONS: dict[int, Any] = {}


def load_settings(path: Path) -> GuiSettings:
    """Read the settings file; a file that does not exist yet gives the defaults.

    Raises:
        SettingsError: the file is unreadable, not JSON, from a newer version of the program, or
            holds an unknown key or an invalid value; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        return GuiSettings()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc}; fix or delete it") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("settings"), Mapping):
        raise SettingsError(f"{path}: expected {{\"version\": N, \"settings\": {{...}}}}; fix or delete the file")
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SettingsError(f"{path}: 'version' must be an integer >= 1, got {version!r}")
    if version > SETTINGS_VERSION:
        raise SettingsError(
            f"{path}: written by a newer yolov7-track (settings version {version}, this one reads "
            f"up to {SETTINGS_VERSION}); upgrade, or delete the file to start from the defaults"
        )
    data = dict(document["settings"])
    for old in range(version, SETTINGS_VERSION):
        data = _MIGRATIONS[old](data)
    try:
        return GuiSettings.from_dict(data)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from exc


def save_settings(settings: GuiSettings, path: Path) -> None:
    """Write ``settings`` to ``path`` (folders created), atomically: a crash never leaves a
    half-written file.

    Raises:
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": SETTINGS_VERSION, "settings": settings.to_dict()}, indent=2) + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
