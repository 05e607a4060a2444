"""Zone files: lines and polygon zones in JSON or YAML, validated into typed dataclasses.

File format (JSON shown; YAML is the same structure)::

    {
      "normalized": false,                       # optional, see below
      "lines": [
        {"name": "door", "start": [100, 400], "end": [500, 400], "anchor": "bottom_center"}
      ],
      "zones": [
        {"name": "queue", "polygon": [[0, 0], [200, 0], [200, 150]], "anchor": "center"}
      ]
    }

- ``lines`` and ``zones`` are both optional, but a file must define at least one of them.
- ``name`` is required and unique across lines and zones (it names the events).
- ``anchor`` is optional (default ``bottom_center``); values are :class:`Anchor` values.
- Coordinates are pixels of the frame, or fractions of the frame width/height (0–1) when
  ``normalized: true``. Without the flag, a file whose coordinates all lie in ``[0, 1]`` is read
  as normalized (logged), any other file as pixels. :meth:`CountingConfig.to_pixels` resolves a
  normalized configuration against the frame size.
- Unknown keys are errors, so a misspelt field never silently falls back to a default.

Every problem raises :class:`ZoneConfigError` naming the file and the field, e.g.
``zones.yaml: lines[1].start: expected two numbers [x, y], got 'abc'``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from app.counting.geometry import Anchor, polygon_meets_rect, segment_meets_rect
from app.counting.line import DEFAULT_MAX_ABSENT_S, CountingLine, LineRules
from app.counting.tracks import ClassNames
from app.counting.zone import CountingZone, ZoneRules, polygon_problem

from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "ZoneConfigError",
    "LineSpec",
    "ZoneSpec",
    "CountingConfig",
    "load_counting_config",
    "save_counting_config",
    "parse_counting_config",
]

logger = logging.getLogger(__name__)

_JSON_SUFFIXES = (".json",)
_YAML_SUFFIXES = (".yaml", ".yml")
_LINE_KEYS = ("name", "start", "end", "anchor")
_ZONE_KEYS = ("name", "polygon", "anchor")
_TOP_KEYS = ("normalized", "lines", "zones")

XY = tuple[float, float]


class ZoneConfigError(Yolov7TrackError, ValueError):
    """A zone file (or an in-memory configuration) is unreadable or invalid.

    Attributes:
        source: the file path, or ``"<config>"`` for in-memory data.
        field: the offending field, e.g. ``"lines[1].start"``; empty for file-level errors.
        reason: what is wrong and what was expected.
    """

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + reason)


@dataclass(frozen=True, slots=True)
class LineSpec:
    """A counting line as written in a zone file (pixels, or 0–1 fractions if normalized)."""

    name: str
    start: XY
    end: XY
    anchor: Anchor = Anchor.BOTTOM_CENTER


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A polygon zone as written in a zone file (pixels, or 0–1 fractions if normalized)."""

    name: str
    polygon: tuple[XY, ...]
    anchor: Anchor = Anchor.BOTTOM_CENTER


@dataclass(frozen=True, slots=True)
class CountingConfig:
    """Lines and zones of one camera view.

    Attributes:
        lines: counting lines.
        zones: polygon zones.
        normalized: ``True`` when coordinates are fractions of the frame width/height.
    """

    lines: tuple[LineSpec, ...] = ()
    zones: tuple[ZoneSpec, ...] = ()
    normalized: bool = False

    def __post_init__(self) -> None:
        _check_semantics(self.lines, self.zones, self.normalized, "<config>")

    def to_pixels(self, frame_width: int, frame_height: int) -> "CountingConfig":
        """Return the configuration in pixels of a ``frame_width`` x ``frame_height`` frame.

        A pixel configuration is returned unchanged. Raises ``ValueError`` for a non-positive
        frame size.
        """
        if frame_width <= 0 or frame_height <= 0:
            raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
        if not self.normalized:
            return self

        def scale(xy: XY) -> XY:
            return (xy[0] * frame_width, xy[1] * frame_height)

        return CountingConfig(
            lines=tuple(replace(s, start=scale(s.start), end=scale(s.end)) for s in self.lines),
            zones=tuple(
                replace(s, polygon=tuple(scale(p) for p in s.polygon)) for s in self.zones
            ),
            normalized=False,
        )

    def to_normalized(self, frame_width: int, frame_height: int) -> "CountingConfig":
        """The inverse of :meth:`to_pixels`: coordinates as fractions of a ``frame_width`` x
        ``frame_height`` frame (a normalized configuration is returned unchanged).

        Raises:
            ValueError: a non-positive frame size, or a point outside the frame (fractions must
                lie in 0-1; keep such a configuration in pixels).
        """
        if frame_width <= 0 or frame_height <= 0:
            raise ValueError(f"frame size must be positive, got {frame_width}x{frame_height}")
        if self.normalized:
            return self
        if not all(0.0 <= xy[0] <= frame_width and 0.0 <= xy[1] <= frame_height
                   for _, xy in _all_points(self.lines, self.zones)):
            raise ValueError(f"a point lies outside the {frame_width}x{frame_height} frame")

        def scale(xy: XY) -> XY:
            return (xy[0] / frame_width, xy[1] / frame_height)

        return CountingConfig(
            lines=tuple(replace(s, start=scale(s.start), end=scale(s.end)) for s in self.lines),
            zones=tuple(replace(s, polygon=tuple(scale(p) for p in s.polygon)) for s in self.zones),
            normalized=True,
        )

    @staticmethod
    def merged(configs: "Sequence[CountingConfig]", frame_width: int, frame_height: int) -> "CountingConfig | None":
        """One pixel configuration holding every line and zone of ``configs`` (a camera's inline
        shapes and its zone file), or ``None`` when they hold none.

        Raises:
            ZoneConfigError: two shapes share a name.
        """
        pixels = [config.to_pixels(frame_width, frame_height) for config in configs]
        lines = tuple(spec for config in pixels for spec in config.lines)
        zones = tuple(spec for config in pixels for spec in config.zones)
        return CountingConfig(lines, zones, normalized=False) if lines or zones else None

    def build(
        self,
        frame_width: int,
        frame_height: int,
        *,
        line_rules: LineRules | str = LineRules.robust(),
        zone_rules: ZoneRules | str = ZoneRules.robust(),
        max_absent_s: float | None = DEFAULT_MAX_ABSENT_S,
        max_absent_frames: int | None = None,
        class_names: ClassNames | None = None,
    ) -> tuple[list[CountingLine], list[CountingZone]]:
        """Create the counting objects for a ``frame_width`` x ``frame_height`` frame.

        The keyword arguments go to every :class:`CountingLine` / :class:`CountingZone`; the
        rules default to the robust ones, as theirs do (``"exact"`` for clean trajectories).
        A line or zone that lies entirely outside the frame is logged as a warning (it can
        count nothing: coordinates meant for another resolution, or fractions without
        ``normalized``); it is still built.

        Raises:
            ValueError: non-positive frame size, or a line too short for ``line_rules``'s
                endpoint margin.
        """
        pixels = self.to_pixels(frame_width, frame_height)
        _warn_outside_frame(pixels, frame_width, frame_height)
        common = {
            "max_absent_s": max_absent_s,
            "max_absent_frames": max_absent_frames,
            "class_names": class_names,
        }
        lines = [
            CountingLine(s.start, s.end, s.name, anchor=s.anchor, rules=line_rules, **common)
            for s in pixels.lines
        ]
        zones = [
            CountingZone(s.polygon, s.name, anchor=s.anchor, rules=zone_rules, **common)
            for s in pixels.zones
        ]
        return lines, zones

    def outside_frame(self, frame_width: int, frame_height: int) -> tuple[str, ...]:
        """Names of the lines and zones that lie entirely outside a ``frame_width`` x
        ``frame_height`` frame (no point of the segment, or of the polygon's outline or inside,
        is in ``[0, W] x [0, H]`` pixels)."""
        pixels = self.to_pixels(frame_width, frame_height)
        names = [s.name for s in pixels.lines
                 if not segment_meets_rect(s.start, s.end, frame_width, frame_height)]
        names += [s.name for s in pixels.zones
                  if not polygon_meets_rect(s.polygon, frame_width, frame_height)]
        return tuple(names)

    def to_dict(self) -> dict[str, Any]:
        """The file representation (the inverse of :func:`parse_counting_config`)."""
        return {
            "normalized": self.normalized,
            "lines": [
                {
                    "name": s.name,
                    "start": list(s.start),
                    "end": list(s.end),
                    "anchor": s.anchor.value,
                }
                for s in self.lines
            ],
            "zones": [
                {"name": s.name, "polygon": [list(p) for p in s.polygon], "anchor": s.anchor.value}
                for s in self.zones
            ],
        }


# ------------------------------------------------------------------------------- reading
def load_counting_config(path: str | Path) -> CountingConfig:
    """Read and validate a zone file (``.json``, ``.yaml`` or ``.yml``).

    Raises:
        ZoneConfigError: the file is missing, unreadable, not valid JSON/YAML, or a field is
            invalid; the message names the file and the field.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in _JSON_SUFFIXES + _YAML_SUFFIXES:
        raise ZoneConfigError(
            source, "", f"unsupported extension {path.suffix!r}; use .json, .yaml or .yml"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ZoneConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ZoneConfigError(source, "", f"cannot read file: {exc}") from exc
    try:
        data = json.loads(text) if suffix in _JSON_SUFFIXES else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if suffix in _JSON_SUFFIXES else "YAML"
        raise ZoneConfigError(source, "", f"not valid {kind}: {exc}") from exc
    return parse_counting_config(data, source=source)


def parse_counting_config(data: Any, source: str = "<config>") -> CountingConfig:
    """Validate already-parsed JSON/YAML data into a :class:`CountingConfig`.

    Raises:
        ZoneConfigError: as :func:`load_counting_config`, naming ``source``.
    """
    if not isinstance(data, Mapping):
        raise ZoneConfigError(
            source, "", f"expected a mapping with 'lines' and/or 'zones', got {_kind(data)}"
        )
    _reject_unknown_keys(data, _TOP_KEYS, "", source)
    normalized_flag = data.get("normalized")
    if normalized_flag is not None and not isinstance(normalized_flag, bool):
        raise ZoneConfigError(source, "normalized", f"expected true or false, got {normalized_flag!r}")
    raw_lines = _list_field(data, "lines", source)
    raw_zones = _list_field(data, "zones", source)
    if not raw_lines and not raw_zones:
        raise ZoneConfigError(source, "", "defines no lines and no zones")

    lines = tuple(_parse_line(item, f"lines[{i}]", source) for i, item in enumerate(raw_lines))
    zones = tuple(_parse_zone(item, f"zones[{i}]", source) for i, item in enumerate(raw_zones))
    if normalized_flag is None:
        normalized = _all_coordinates_in_unit_range(lines, zones)
        if normalized:
            logger.info("%s: all coordinates lie in [0, 1]; reading them as normalized", source)
    else:
        normalized = normalized_flag
    _check_semantics(lines, zones, normalized, source)
    return CountingConfig(lines=lines, zones=zones, normalized=normalized)


def _parse_line(item: Any, where: str, source: str) -> LineSpec:
    if not isinstance(item, Mapping):
        raise ZoneConfigError(source, where, f"expected a mapping, got {_kind(item)}")
    _reject_unknown_keys(item, _LINE_KEYS, where, source)
    name = _name_field(item, where, source)
    start = _xy(_required(item, "start", where, source), f"{where}.start", source)
    end = _xy(_required(item, "end", where, source), f"{where}.end", source)
    anchor = _anchor_field(item, where, source)
    return LineSpec(name=name, start=start, end=end, anchor=anchor)


def _parse_zone(item: Any, where: str, source: str) -> ZoneSpec:
    if not isinstance(item, Mapping):
        raise ZoneConfigError(source, where, f"expected a mapping, got {_kind(item)}")
    _reject_unknown_keys(item, _ZONE_KEYS, where, source)
    name = _name_field(item, where, source)
    raw = _required(item, "polygon", where, source)
    if not isinstance(raw, list) or len(raw) < 3:
        raise ZoneConfigError(
            source, f"{where}.polygon", f"expected a list of at least 3 [x, y] points, got {raw!r}"
        )
    polygon = tuple(_xy(p, f"{where}.polygon[{j}]", source) for j, p in enumerate(raw))
    anchor = _anchor_field(item, where, source)
    return ZoneSpec(name=name, polygon=polygon, anchor=anchor)


def _check_semantics(
    lines: tuple[LineSpec, ...], zones: tuple[ZoneSpec, ...], normalized: bool, source: str
) -> None:
    """Checks that need the whole configuration: unique names, geometry, coordinate range."""
    seen: dict[str, str] = {}
    for kind, specs in (("lines", lines), ("zones", zones)):
        for i, spec in enumerate(specs):
            where = f"{kind}[{i}]"
            if not isinstance(spec.name, str) or not spec.name.strip():
                raise ZoneConfigError(source, f"{where}.name", "expected a non-empty string")
            if spec.name in seen:
                raise ZoneConfigError(
                    source, f"{where}.name", f"{spec.name!r} is already used by {seen[spec.name]}"
                )
            seen[spec.name] = where
    for i, line in enumerate(lines):
        if line.start == line.end:
            raise ZoneConfigError(source, f"lines[{i}].end", f"equals start {list(line.start)}")
    for i, zone in enumerate(zones):
        if len(zone.polygon) < 3:
            raise ZoneConfigError(source, f"zones[{i}].polygon", "needs at least 3 points")
        problem = polygon_problem(zone.polygon, zone.name)
        if problem is not None:
            raise ZoneConfigError(source, f"zones[{i}].polygon", problem)
    if normalized:
        for where, xy in _all_points(lines, zones):
            if not (0.0 <= xy[0] <= 1.0 and 0.0 <= xy[1] <= 1.0):
                raise ZoneConfigError(
                    source,
                    where,
                    f"normalized coordinates must lie in [0, 1], got {list(xy)}; "
                    "set normalized: false for pixel coordinates",
                )


def _warn_outside_frame(pixels: CountingConfig, frame_width: int, frame_height: int) -> None:
    """One warning per line or zone of ``pixels`` (pixel coordinates) outside the frame."""
    outside = set(pixels.outside_frame(frame_width, frame_height))
    for spec in (*pixels.lines, *pixels.zones):
        if spec.name not in outside:
            continue
        if isinstance(spec, LineSpec):
            what = f"line {spec.name!r} ({_xy_text(spec.start)} -> {_xy_text(spec.end)} px)"
        else:
            xs = [x for x, _ in spec.polygon]
            ys = [y for _, y in spec.polygon]
            what = (f"zone {spec.name!r} (x {min(xs):g}..{max(xs):g}, "
                    f"y {min(ys):g}..{max(ys):g} px)")
        logger.warning(
            "%s lies entirely outside the %dx%d frame and will count nothing; give its "
            "coordinates in pixels of this source, or as fractions 0-1 with normalized: true",
            what, frame_width, frame_height,
        )


def _xy_text(xy: XY) -> str:
    return f"({xy[0]:g}, {xy[1]:g})"


def _all_points(lines: tuple[LineSpec, ...], zones: tuple[ZoneSpec, ...]):
    for i, line in enumerate(lines):
        yield f"lines[{i}].start", line.start
        yield f"lines[{i}].end", line.end
    for i, zone in enumerate(zones):
        for j, xy in enumerate(zone.polygon):
            yield f"zones[{i}].polygon[{j}]", xy


def _all_coordinates_in_unit_range(
    lines: tuple[LineSpec, ...], zones: tuple[ZoneSpec, ...]
) -> bool:
    return all(0.0 <= v <= 1.0 for _, xy in _all_points(lines, zones) for v in xy)


def _list_field(data: Mapping, key: str, source: str) -> list:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ZoneConfigError(source, key, f"expected a list, got {_kind(value)}")
    return value


def _required(item: Mapping, key: str, where: str, source: str) -> Any:
    if key not in item:
        raise ZoneConfigError(source, f"{where}.{key}", "missing (required)")
    return item[key]


def _name_field(item: Mapping, where: str, source: str) -> str:
    name = _required(item, "name", where, source)
    if not isinstance(name, str) or not name.strip():
        raise ZoneConfigError(source, f"{where}.name", f"expected a non-empty string, got {name!r}")
    return name


def _anchor_field(item: Mapping, where: str, source: str) -> Anchor:
    if "anchor" not in item:
        return Anchor.BOTTOM_CENTER
    try:
        return Anchor.parse(item["anchor"])
    except ValueError as exc:
        raise ZoneConfigError(source, f"{where}.anchor", str(exc)) from None


def _xy(value: Any, where: str, source: str) -> XY:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise ZoneConfigError(source, where, f"expected two numbers [x, y], got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ZoneConfigError(source, where, f"expected finite numbers, got {value!r}")
    return (x, y)


def _reject_unknown_keys(item: Mapping, allowed: tuple[str, ...], where: str, source: str) -> None:
    for key in item:
        if key not in allowed:
            field_name = f"{where}.{key}" if where else str(key)
            raise ZoneConfigError(
                source, field_name, f"unknown field; expected one of: {', '.join(allowed)}"
            )


def _kind(value: Any) -> str:
    return "nothing (empty file)" if value is None else type(value).__name__


# ------------------------------------------------------------------------------- writing
def save_counting_config(config: CountingConfig, path: str | Path) -> None:
    """Write ``config`` to ``path`` as JSON (``.json``) or YAML (``.yaml``/``.yml``).

    The file is written to a temporary sibling and renamed into place, so a crash never leaves
    a half-written zone file. :func:`load_counting_config` reads it back to an equal config.

    Raises:
        ZoneConfigError: unsupported extension.
        OSError: the file cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    data = config.to_dict()
    if suffix in _JSON_SUFFIXES:
        text = json.dumps(data, indent=2) + "\n"
    elif suffix in _YAML_SUFFIXES:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    else:
        raise ZoneConfigError(
            str(path), "", f"unsupported extension {path.suffix!r}; use .json, .yaml or .yml"
        )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)

