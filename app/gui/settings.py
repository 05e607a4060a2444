"""Typed, versioned settings of the desktop GUI, kept in a JSON file in the user's config folder.

No Qt here (napari keeps its settings schema free of the toolkit the same way), so the schema is
testable on its own. The window's geometry is not part of it: Qt's ``QSettings`` keeps that,
in an INI file next to this one (see :func:`window_state_path`).

File layout (``$XDG_CONFIG_HOME/yolov7-track/settings.json`` on Linux)::

    {"version": 2, "settings": {"weights": "yolov7-tiny-traffic", "conf_thres": 0.25, ...,
                                "tracker": {"kind": "bytetrack",
                                            "bytetrack": {"track_thresh": 0.5, ...},
                                            "sort": {"max_age": 1, ...}}}}

The tracker section has one sub-mapping per tracker of :data:`tracker.registry.TRACKERS`, keyed
by the registry's name and holding that tracker's parameters under the registry's names
(:func:`tracker.registry.tracker_parameters`), so a newly registered tracker needs no change here.
Version 1 kept the ByteTrack and SORT parameters flat in ``"tracker"`` under other names
(``track_buffer_frames``, ``max_age_frames``, ...); such files are still read (see
``_V1_TRACKER_KEYS``).

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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tracker.errors import InvalidTrackerConfigError
from tracker.registry import TRACKERS, tracker_parameters
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "APP_DIR_NAME",
    "DEFAULT_TRACKER",
    "MAX_RECENT_SOURCES",
    "SETTINGS_VERSION",
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
SETTINGS_VERSION = 2
APP_DIR_NAME = "yolov7-track"
#: Overrides the default folder of recordings and events files (an empty ``output_dir``).
OUTPUT_DIR_ENV_VAR = "YOLOV7_TRACK_OUTPUT_DIR"
SETTINGS_FILE_NAME = "settings.json"
WINDOW_STATE_FILE_NAME = "window.ini"
#: Entries kept in the recent-sources list.
MAX_RECENT_SOURCES = 10
#: The tracker of a fresh install (a key of :data:`tracker.registry.TRACKERS`).
DEFAULT_TRACKER = "bytetrack"
# detector.precision.PRECISIONS / BACKENDS (not imported: torch is slow to load; a test keeps them equal)
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BACKEND_CHOICES = ("torch", "onnxruntime", "openvino")


class SettingsError(Yolov7TrackError, ValueError):
    """A settings value or file is invalid; the message names the key (and file) and the fix."""


# ------------------------------------------------------------------------------ schema
@dataclass(frozen=True)
class TrackerSettings:
    """Which tracker runs, and the parameters of every registered tracker.

    Generic over :data:`tracker.registry.TRACKERS`: a tracker registered there is offered here,
    in the settings file and in the settings dialog with no change to this module. The values of
    every tracker are kept, so switching trackers back and forth loses none of them.

    Attributes:
        kind: the tracker that runs, a key of :data:`tracker.registry.TRACKERS` (default
            ``"bytetrack"``, :class:`tracker.ByteTrack`).
        params_by_kind: tracker name -> parameter name -> value, in the registry's names and
            types (:func:`tracker.registry.tracker_parameters`; ``frame_rate`` is the source's
            and not set here). Construction fills in every registered tracker and every
            parameter that is not given with the registry's default, turns integers given for
            float parameters into floats, and leaves a read-only mapping. Ranges are the
            tracker configs' own (:class:`tracker.ByteTrackConfig`, :class:`tracker.SortConfig`).

    Raises:
        SettingsError: an unregistered ``kind`` or tracker, an unknown parameter, a value of the
            wrong type, or one the tracker's config refuses; the message names the setting as it
            is written in the file (``tracker.sort.min_hits``).
    """

    kind: str = DEFAULT_TRACKER
    params_by_kind: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in TRACKERS:
            raise SettingsError(f"tracker.kind must be one of {', '.join(TRACKERS)}, got {self.kind!r}")
        if not isinstance(self.params_by_kind, Mapping):
            raise SettingsError(f"tracker parameters must be a mapping of tracker -> parameters, "
                                f"got {type(self.params_by_kind).__name__}")
        for name in self.params_by_kind:
            if name not in TRACKERS:
                raise SettingsError(f"unknown setting tracker.{name!r}; registered trackers: {', '.join(TRACKERS)}")
        checked = {name: MappingProxyType(_tracker_params(name, self.params_by_kind.get(name, {})))
                   for name in TRACKERS}
        object.__setattr__(self, "params_by_kind", MappingProxyType(checked))

    def __hash__(self) -> int:
        return hash((self.kind, tuple((name, tuple(p.items())) for name, p in self.params_by_kind.items())))

    def params(self) -> dict[str, Any]:
        """The parameters of :attr:`kind` for :func:`tracker.registry.make_tracker`."""
        return dict(self.params_by_kind[self.kind])

    def to_dict(self) -> dict[str, Any]:
        """The ``"tracker"`` section of the file: ``{"kind": ..., "<tracker>": {...}, ...}``."""
        return {"kind": self.kind, **{name: dict(params) for name, params in self.params_by_kind.items()}}

    @classmethod
    def from_dict(cls, data: object) -> TrackerSettings:
        """Inverse of :meth:`to_dict`; a missing kind, tracker or parameter takes its default.

        Raises:
            SettingsError: not a mapping, an unknown key, or an invalid value (named).
        """
        if not isinstance(data, Mapping):
            raise SettingsError(f"tracker must be a mapping, got {type(data).__name__}")
        known = ("kind", *TRACKERS)
        for key in data:
            if key not in known:
                raise SettingsError(f"unknown setting tracker.{key!r}; known: {', '.join(known)}")
        return cls(kind=data.get("kind", DEFAULT_TRACKER),
                   params_by_kind={key: value for key, value in data.items() if key != "kind"})


def _tracker_params(name: str, given: object) -> dict[str, Any]:
    """Every parameter of tracker ``name``: ``given`` (type-checked) over the registry's defaults,
    checked as a whole by the tracker's config dataclass."""
    prefix = f"tracker.{name}"
    if not isinstance(given, Mapping):
        raise SettingsError(f"{prefix} must be a mapping of parameter -> value, got {given!r}")
    known = tracker_parameters(name)
    for key in given:
        if key not in known:
            raise SettingsError(f"unknown setting {prefix}.{key!r}; known: {', '.join(known)}")
    values = {key: _typed(f"{prefix}.{key}", given[key], kind) if key in given else default
              for key, (kind, default) in known.items()}
    try:
        TRACKERS[name].config_type(**values)
    except InvalidTrackerConfigError as exc:
        raise SettingsError(f"{prefix}: {exc}") from exc
    return values


def _typed(name: str, value: object, kind: type) -> Any:
    """``value`` as a parameter of type ``kind`` (an int is accepted for a float; a bool is not a
    number), else :class:`SettingsError`."""
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{name} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SettingsError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(kind, type) and not isinstance(value, kind):
        raise SettingsError(f"{name} must be a {kind.__name__}, got {value!r}")
    return value


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
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["tracker"] = self.tracker.to_dict()
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
        if values.get("tracker") is not None:
            values["tracker"] = TrackerSettings.from_dict(values["tracker"])
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


#: Version 1's flat tracker keys -> (tracker, registry parameter) of version 2.
_V1_TRACKER_KEYS = {
    "track_thresh": ("bytetrack", "track_thresh"),
    "match_thresh": ("bytetrack", "match_thresh"),
    "track_buffer_frames": ("bytetrack", "track_buffer"),
    "max_age_frames": ("sort", "max_age"),
    "min_hits": ("sort", "min_hits"),
    "iou_threshold": ("sort", "iou_threshold"),
}


def _tracker_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the flat ``"tracker"`` keys of ByteTrack and SORT go to the sub-mapping of
    their tracker under the registry's parameter names (``max_age_frames`` -> ``sort.max_age``).

    Raises:
        SettingsError: a tracker key that version 1 did not know either.
    """
    tracker = data.get("tracker")
    if not isinstance(tracker, Mapping):
        return data  # absent, or refused with its type by GuiSettings.from_dict
    migrated: dict[str, Any] = {}
    for key, value in tracker.items():
        if key == "kind":
            migrated[key] = value
        elif key in _V1_TRACKER_KEYS:
            name, param = _V1_TRACKER_KEYS[key]
            migrated.setdefault(name, {})[param] = value
        else:
            raise SettingsError(f"unknown setting tracker.{key!r}; known: kind, {', '.join(_V1_TRACKER_KEYS)}")
    return {**data, "tracker": migrated}


# Migrations from older file versions: ``{old_version: function(settings_dict) -> dict}``,
# each producing the layout of ``old_version + 1``. Version 1 is the first.
_MIGRATIONS: dict[int, Any] = {1: _tracker_v1_to_v2}


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
    try:
        for old in range(version, SETTINGS_VERSION):
            data = _MIGRATIONS[old](data)
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
