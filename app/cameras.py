"""The cameras file of ``yolov7-track serve``: every camera, the shared detector and the outputs.

YAML (or JSON) of this shape; only ``cameras`` and each camera's ``id`` and ``source`` are
required::

    detector:                     # one detector serves every camera (dynamic batching)
      weights: yolov7-tiny-traffic
      precision: auto             # auto | fp32 | bf16 | fp16
      backend: torch              # torch | onnxruntime | openvino
      device: auto
      img_size: 640
      conf: 0.25
      iou: 0.45
      max_batch: 8                # frames per forward pass, at most
      max_wait_ms: 10             # how long a frame waits for others to join its batch
      workers: 1                  # batches in flight at once (2 can fill a CPU's idle gaps)
      threads: null               # torch CPU threads (null: torch's default)
    outputs:
      events: events.sqlite       # every camera's events, with camera_id and wall_time
      mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: yolov7-track}
      webhook: {url: "http://127.0.0.1:8080/events"}
      metrics: {host: 127.0.0.1, port: 9108}   # /metrics (Prometheus) and /status (JSON)
      spool_dir: null             # MQTT/webhook spools (default ~/.cache/yolov7-track/spool)
    ray:                          # serve --ray only (app/ray_service; ignored otherwise)
      detectors: 2                # detector actors (the pool grows on SIGHUP when raised)
      detector_num_gpus: 0.5      # resources each asks for (0.5: two on one GPU)
      detector_num_cpus: 1
      camera_num_cpus: 0.25
      colocate_cameras: true      # false: cameras anywhere, frames over the network
    cameras:
      - id: gate                  # letters, digits, '-', '_' (MQTT topics and metric labels)
        source: rtsp://user:pass@10.0.0.5/stream1     # or a file, a folder, a webcam index
        lines:                    # inline, as in a zone file (app/counting/config.py) ...
          - {name: road, start: [0, 0.6], end: [1, 0.6]}
        zone_file: gate-zones.yaml  # ... and/or a zone file (relative to this file)
        classes: [car, truck]     # class names or ids this camera counts (default: all)
        tracker: {name: bytetrack, track_thresh: 0.5}  # tracker/registry.py parameters
        fps_cap: 10               # live sources: at most this many frames per second
        vid_stride: 1             # detect every N-th frame
        video_output: null        # annotated video of this camera (files only)

Relative paths are relative to the cameras file. Unknown keys are errors, so a misspelt field
never silently falls back to a default. Every problem raises :class:`CamerasFileError` naming
the file, the camera and the field: ``cameras.yaml: camera 'gate': tracker.track_thresh: ...``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.counting import (
    CountingConfig,
    ZoneConfigError,
    load_counting_config,
    parse_counting_config,
    save_counting_config,
)
from yolov7_track.checks import is_int, is_number, kind
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "CameraSpec",
    "CamerasFile",
    "CamerasFileError",
    "DetectorSpec",
    "OutputsSpec",
    "load_cameras_file",
    "parse_cameras",
    "save_camera_counting",
]

_CAMERA_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_BACKENDS = ("torch", "onnxruntime", "openvino")


class CamerasFileError(Yolov7TrackError, ValueError):
    """The cameras file is unreadable or invalid; the message names file, camera and field."""


@dataclass(frozen=True)
class DetectorSpec:
    """The shared detector (see the module docstring for the meaning of each field)."""

    weights: str = "yolov7-tiny-traffic"
    precision: str = "auto"
    backend: str = "torch"
    device: str = "auto"
    img_size: int | None = None
    conf: float = 0.25
    iou: float = 0.45
    max_batch: int = 8
    max_wait_ms: float = 10.0
    workers: int = 1
    threads: int | None = None


@dataclass(frozen=True)
class OutputsSpec:
    """Where events and metrics go; ``None`` turns an output off."""

    events: Path | None = None
    mqtt: Mapping[str, Any] | None = None
    webhook: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    spool_dir: Path | None = None


@dataclass(frozen=True)
class CameraSpec:
    """One camera. ``counting`` holds its inline lines/zones and its zone file, in that order."""

    id: str
    source: str
    counting: tuple[CountingConfig, ...] = ()
    classes: tuple[str, ...] | None = None
    tracker: str = "bytetrack"
    tracker_params: Mapping[str, Any] = field(default_factory=dict)
    fps_cap: float | None = None
    vid_stride: int = 1
    video_output: Path | None = None


@dataclass(frozen=True)
class CamerasFile:
    """A validated cameras file."""

    path: Path
    detector: DetectorSpec
    outputs: OutputsSpec
    cameras: tuple[CameraSpec, ...]
    #: the ``ray`` section (``serve --ray``): :data:`RAY_KEYS` -> value, checked by
    #: :class:`app.ray_service.RayServiceConfig`; ignored without ``--ray``.
    ray: Mapping[str, Any] = field(default_factory=dict)

    def camera(self, camera_id: str) -> CameraSpec:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(camera_id)


def load_cameras_file(path: str | Path) -> CamerasFile:
    """Read and validate a cameras file (``.yaml``, ``.yml`` or ``.json``).

    Raises:
        CamerasFileError: missing or unreadable file, bad YAML/JSON, or an invalid field (the
            message names the file, the camera and the field).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CamerasFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CamerasFileError(f"{path}: cannot read it: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CamerasFileError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}") from exc
    return parse_cameras(data, path)


def parse_cameras(data: Any, path: Path) -> CamerasFile:
    """Validate parsed YAML/JSON ``data`` of the file at ``path`` (relative paths resolve
    against its folder).

    Raises:
        CamerasFileError: as :func:`load_cameras_file`.
    """
    where = _Where(path)
    if not isinstance(data, Mapping):
        raise where.error("", f"expected a mapping with 'cameras', got {kind(data)}")
    where.reject_unknown(data, ("detector", "outputs", "cameras", "ray"), "")
    detector = _parse_detector(data.get("detector") or {}, where)
    outputs = _parse_outputs(data.get("outputs") or {}, where)
    raw_cameras = data.get("cameras")
    if not isinstance(raw_cameras, list) or not raw_cameras:
        raise where.error("cameras", f"expected a non-empty list of cameras, got {kind(raw_cameras)}")
    cameras = []
    seen: set[str] = set()
    for index, item in enumerate(raw_cameras):
        camera = _parse_camera(item, index, where)
        if camera.id in seen:
            raise where.error(f"cameras[{index}].id", f"camera id {camera.id!r} is used twice")
        seen.add(camera.id)
        cameras.append(camera)
    return CamerasFile(path, detector, outputs, tuple(cameras), _parse_ray(data.get("ray") or {}, where))


# ------------------------------------------------------------------------------ writing
def save_camera_counting(path: str | Path, counting: Mapping[str, CountingConfig | None]) -> list[str]:
    """Write new lines and zones of some cameras back into the cameras file at ``path``.

    Everything else in the file stays as it was, YAML comments and key order included (the file
    is edited with ruamel.yaml's round trip, not rewritten from our dataclasses). Where each
    camera's shapes go:

    - a camera whose shapes came only from its ``zone_file`` keeps that reference, and the zone
      file is rewritten (:func:`app.counting.save_counting_config`);
    - otherwise they go inline (``lines``, ``zones``, ``normalized``); a ``zone_file`` the camera
      also had is dropped from it, since its shapes are now inline (the zone file itself is left
      untouched; the returned notes say so).

    ``None`` removes every line and zone of the camera. Pass normalized configurations
    (:meth:`CountingConfig.to_normalized`) to keep the file valid for any resolution.

    The new file is validated (:func:`parse_cameras`) before it replaces the old one, and it is
    written to a temporary sibling and renamed into place, so a crash or a bad edit never leaves
    a broken cameras file.

    Returns:
        notes for the user (e.g. a dropped zone_file), possibly empty.

    Raises:
        CamerasFileError: the file cannot be read or parsed, a camera id is not in it, or the
            result does not validate.
        OSError: the file or a zone file cannot be written.
    """
    path = Path(path)
    is_json = path.suffix.lower() == ".json"
    round_trip = _round_trip_yaml()
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if is_json else round_trip.load(text)
    except FileNotFoundError:
        raise CamerasFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, _ruamel_error()) as exc:
        raise CamerasFileError(f"{path}: cannot read it back: {exc}") from exc
    current = parse_cameras(data, path)
    entries = {entry.get("id"): entry for entry in data["cameras"]}
    notes: list[str] = []
    zone_files: list[tuple[CountingConfig, Path]] = []
    for camera_id, config in counting.items():
        if camera_id not in entries:
            raise CamerasFileError(f"{path}: camera {camera_id!r}: not in the file")
        entry = entries[camera_id]
        has_inline = bool(entry.get("lines") or entry.get("zones"))
        if entry.get("zone_file") is not None and not has_inline and config is not None:
            zone_path = _Where(path, camera_id).path(entry["zone_file"], "zone_file")
            assert zone_path is not None
            zone_files.append((config, zone_path))
            continue
        for key in ("lines", "zones", "normalized"):
            entry.pop(key, None)
        if entry.get("zone_file") is not None:
            notes.append(f"camera {camera_id!r}: its lines and zones are now inline; "
                         f"zone_file {entry['zone_file']} was dropped from it (the file itself is unchanged)")
            entry.pop("zone_file")
        if config is not None:
            entry.update(_inline_counting(config, flow=not is_json))
    for config, zone_path in zone_files:  # before the cameras file, which is validated against them
        save_counting_config(config, zone_path)
    buffer = io.StringIO()
    if is_json:
        buffer.write(json.dumps(data, indent=2) + "\n")
    else:
        round_trip.dump(data, buffer)
    new_text = buffer.getvalue()
    check = json.loads(new_text) if is_json else yaml.safe_load(new_text)
    parse_cameras(check, current.path)  # never write a file that `serve` would refuse
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)
    return notes


def _ruamel_error() -> type[Exception]:
    from ruamel.yaml import YAMLError

    return YAMLError


def _round_trip_yaml() -> Any:
    from ruamel.yaml import YAML

    round_trip = YAML()  # round-trip mode: comments, key order and quoting survive
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)  # "  - id: ...", as in the docs above
    return round_trip


def _inline_counting(config: CountingConfig, flow: bool) -> dict[str, Any]:
    """The camera keys of ``config`` (lines, zones, normalized); points in flow style in YAML."""
    data = config.to_dict()
    if flow:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        def flow_seq(values: list) -> CommentedSeq:
            seq = CommentedSeq(values)
            seq.fa.set_flow_style()
            return seq

        def flow_map(item: dict) -> CommentedMap:
            mapping = CommentedMap(
                (key, flow_seq([flow_seq(p) for p in value]) if key == "polygon"
                 else flow_seq(value) if isinstance(value, list) else value)
                for key, value in item.items())
            mapping.fa.set_flow_style()
            return mapping

        data = {key: [flow_map(item) for item in value] if isinstance(value, list) else value
                for key, value in data.items()}
    out: dict[str, Any] = {"normalized": data["normalized"]}
    for key in ("lines", "zones"):
        if data[key]:
            out[key] = data[key]
    return out


# ------------------------------------------------------------------------------ sections
def _parse_detector(data: Any, where: _Where) -> DetectorSpec:
    if not isinstance(data, Mapping):
        raise where.error("detector", f"expected a mapping, got {kind(data)}")
    names = [f for f in DetectorSpec.__dataclass_fields__]
    where.reject_unknown(data, names, "detector")
    spec = DetectorSpec(**{key: data[key] for key in names if key in data})
    _require(isinstance(spec.weights, str) and spec.weights.strip(), where, "detector.weights", "a model name or a path", spec.weights)
    _require(spec.precision in _PRECISIONS, where, "detector.precision", " | ".join(_PRECISIONS), spec.precision)
    _require(spec.backend in _BACKENDS, where, "detector.backend", " | ".join(_BACKENDS), spec.backend)
    _require(isinstance(spec.device, str), where, "detector.device", "auto, cpu, cuda or cuda:N", spec.device)
    _require(spec.img_size is None or (is_int(spec.img_size) and spec.img_size >= 32 and spec.img_size % 32 == 0),
             where, "detector.img_size", "a multiple of 32", spec.img_size)
    for name in ("conf", "iou"):
        value = getattr(spec, name)
        _require(is_number(value) and 0 <= value <= 1, where, f"detector.{name}", "a number in [0, 1]", value)
    _require(is_int(spec.max_batch) and spec.max_batch >= 1, where, "detector.max_batch", "an integer >= 1", spec.max_batch)
    _require(is_number(spec.max_wait_ms) and spec.max_wait_ms >= 0, where, "detector.max_wait_ms", "a number >= 0", spec.max_wait_ms)
    _require(is_int(spec.workers) and spec.workers >= 1, where, "detector.workers", "an integer >= 1", spec.workers)
    _require(spec.threads is None or (is_int(spec.threads) and spec.threads >= 1), where, "detector.threads",
             "an integer >= 1 or null", spec.threads)
    return spec


def _parse_outputs(data: Any, where: _Where) -> OutputsSpec:
    if not isinstance(data, Mapping):
        raise where.error("outputs", f"expected a mapping, got {kind(data)}")
    where.reject_unknown(data, ("events", "mqtt", "webhook", "metrics", "spool_dir"), "outputs")
    for name in ("mqtt", "webhook", "metrics"):
        value = data.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise where.error(f"outputs.{name}", f"expected a mapping of options, got {kind(value)}")
    if data.get("webhook") is not None and not isinstance(data["webhook"].get("url"), str):
        raise where.error("outputs.webhook.url", "expected the endpoint's http(s) URL")
    return OutputsSpec(
        events=where.path(data.get("events"), "outputs.events"),
        mqtt=data.get("mqtt"),
        webhook=data.get("webhook"),
        metrics=data.get("metrics"),
        spool_dir=where.path(data.get("spool_dir"), "outputs.spool_dir"),
    )


_CAMERA_KEYS = ("id", "source", "lines", "zones", "normalized", "zone_file", "classes", "tracker",
                "fps_cap", "vid_stride", "video_output")


#: Keys of the ``ray`` section -> the :class:`app.ray_service.RayServiceConfig` field each sets.
RAY_KEYS = {
    "detectors": "detector_actors",
    "detector_num_cpus": "detector_num_cpus",
    "detector_num_gpus": "detector_num_gpus",
    "detector_max_concurrency": "detector_max_concurrency",
    "camera_num_cpus": "camera_num_cpus",
    "colocate_cameras": "colocate_cameras",
    "camera_max_restarts": "camera_max_restarts",
    "detector_max_restarts": "detector_max_restarts",
    "detect_timeout_s": "detect_timeout_s",
}


def _parse_ray(data: Any, where: _Where) -> dict[str, Any]:
    """The ``ray`` section, checked by :class:`app.ray_service.RayServiceConfig` (which imports
    no Ray) so that a bad value is refused with or without ``--ray``."""
    if not isinstance(data, Mapping):
        raise where.error("ray", f"expected a mapping, got {kind(data)}")
    where.reject_unknown(data, tuple(RAY_KEYS), "ray")
    if not data:
        return {}  # without a ray section nothing of app.ray_service is imported
    from app.ray_service.config import RayServiceConfig, RayServiceConfigError

    for key, value in data.items():  # one at a time, so that the message names the file's key
        try:
            RayServiceConfig(**{RAY_KEYS[key]: value})
        except RayServiceConfigError as exc:
            reason = str(exc).removeprefix(RAY_KEYS[key]).strip()
            raise where.error(f"ray.{key}", reason) from exc
    return dict(data)


def _parse_camera(data: Any, index: int, where: _Where) -> CameraSpec:
    if not isinstance(data, Mapping):
        raise where.error(f"cameras[{index}]", f"expected a mapping with id and source, got {kind(data)}")
    camera_id = data.get("id")
    if not isinstance(camera_id, str) or not _CAMERA_ID.match(camera_id):
        raise where.error(f"cameras[{index}].id",
                          f"expected 1-64 letters, digits, '-' or '_' (it names MQTT topics and metrics), got {camera_id!r}")
    at = where.camera(camera_id)
    at.reject_unknown(data, _CAMERA_KEYS, "")
    source = data.get("source")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)
    if not isinstance(source, str) or not source.strip():
        raise at.error("source", f"expected a file, folder, URL or webcam index, got {source!r}")
    if "://" not in source and not source.isdigit():
        source = str(at.path(source, "source"))
    return CameraSpec(
        id=camera_id,
        source=source,
        counting=_parse_counting(data, at),
        classes=_parse_classes(data.get("classes"), at),
        tracker=_tracker_name(data.get("tracker"), at),
        tracker_params=_tracker_params(data.get("tracker"), at),
        fps_cap=_optional_positive(data.get("fps_cap"), at, "fps_cap"),
        vid_stride=_stride(data.get("vid_stride", 1), at),
        video_output=at.path(data.get("video_output"), "video_output"),
    )


def _parse_counting(data: Mapping[str, Any], at: _Where) -> tuple[CountingConfig, ...]:
    configs = []
    inline = {key: data[key] for key in ("lines", "zones", "normalized") if key in data}
    try:
        if inline.get("lines") or inline.get("zones"):
            configs.append(parse_counting_config(inline, source=at.prefix.rstrip(": ")))
        if data.get("zone_file") is not None:
            configs.append(load_counting_config(at.path(data["zone_file"], "zone_file")))
    except ZoneConfigError as exc:
        raise CamerasFileError(str(exc)) from exc
    return tuple(configs)


def _parse_classes(value: Any, at: _Where) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise at.error("classes", f"expected a list of class names or ids, got {value!r}")
    return tuple(str(v) for v in value)


def _tracker_name(value: Any, at: _Where) -> str:
    if value is None:
        return "bytetrack"
    name = value if isinstance(value, str) else (value.get("name", "bytetrack") if isinstance(value, Mapping) else None)
    from tracker.registry import TRACKERS

    if name not in TRACKERS:
        raise at.error("tracker", f"expected one of {', '.join(sorted(TRACKERS))} (or a mapping with name), got {name!r}")
    return name


def _tracker_params(value: Any, at: _Where) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {}
    from tracker import InvalidTrackerConfigError
    from tracker.registry import make_tracker

    params = {key: item for key, item in value.items() if key != "name"}
    try:
        make_tracker(_tracker_name(value, at), params)  # checks names, types and ranges now
    except (InvalidTrackerConfigError, TypeError) as exc:
        raise at.error("tracker", str(exc)) from exc
    return params


def _optional_positive(value: Any, at: _Where, name: str) -> float | None:
    if value is None:
        return None
    _require(is_number(value) and value > 0, at, name, "a number > 0", value)
    return float(value)


def _stride(value: Any, at: _Where) -> int:
    _require(is_int(value) and 1 <= value <= 1000, at, "vid_stride", "an integer from 1 to 1000", value)
    return int(value)


# ------------------------------------------------------------------------------ helpers
class _Where:
    """Builds messages that name the file (and the camera) and resolves relative paths."""

    def __init__(self, path: Path, camera_id: str | None = None) -> None:
        self.file = path
        self.camera_id = camera_id
        self.prefix = f"{path}: camera {camera_id!r}: " if camera_id else f"{path}: "

    def camera(self, camera_id: str) -> _Where:
        return _Where(self.file, camera_id)

    def error(self, field_name: str, reason: str) -> CamerasFileError:
        return CamerasFileError(f"{self.prefix}{field_name + ': ' if field_name else ''}{reason}")

    def reject_unknown(self, data: Mapping[str, Any], known: Any, section: str) -> None:
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise self.error(section or "", f"unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")

    def path(self, value: Any, field_name: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(field_name, f"expected a path, got {value!r}")
        resolved = Path(value).expanduser()
        return resolved if resolved.is_absolute() else self.file.parent / resolved


def _require(ok: Any, at: _Where, field_name: str, expected: str, value: Any) -> None:
    if not ok:
        raise at.error(field_name, f"expected {expected}, got {value!r}")


