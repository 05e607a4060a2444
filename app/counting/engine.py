"""The counting engine of one camera: its lines and zones, built for the frame size, and the
rules for what happens to their counts when the lines and zones are edited during a run.

:class:`CountingEngine` is plain Python with no threads of its own: the pipeline (or the
service, or a test) calls :meth:`CountingEngine.update` once per tracked frame from one thread.
:meth:`CountingEngine.set_configs` may be called from any thread; the new lines and zones take
effect at the next :meth:`update`.

Read-outs (:class:`LineCounts`, :class:`ZoneCounts`) are immutable snapshots taken after a frame:
what the renderer, the GUI and the reports show.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import supervision as sv

from app.counting.config import CountingConfig, LineSpec, ZoneSpec
from app.counting.events import CountEvent
from app.counting.line import DEFAULT_MAX_ABSENT_S, CountingLine, LineRules
from app.counting.zone import CountingZone, ZoneRules

from yolov7_track.errors import Yolov7TrackError

__all__ = ["CountingEngine", "CountingSetupError", "DuplicateNameError", "LineCounts", "ZoneCounts", "as_configs"]

logger = logging.getLogger(__name__)


class CountingSetupError(Yolov7TrackError, ValueError):
    """The lines and zones handed to a :class:`CountingEngine` are not usable."""


class DuplicateNameError(CountingSetupError):
    """Two lines or zones of one camera have the same name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"line/zone name {name!r} is used twice; give every line and zone its own name")


# ---------------------------------------------------------------------------- read-outs
@dataclass(frozen=True)
class LineCounts:
    """A counting line after a frame: geometry (pixels) and counts so far.

    ``by_class`` maps class name to ``(in_count, out_count)``.
    """

    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    in_count: int
    out_count: int
    by_class: Mapping[str, tuple[int, int]]

    @classmethod
    def of(cls, line: CountingLine) -> LineCounts:
        return cls(line.name, line.start, line.end, line.in_count, line.out_count, line.counts_by_class())


@dataclass(frozen=True)
class ZoneCounts:
    """A zone after a frame: polygon (pixels), occupancy and enter/exit counts so far.

    ``occupancy_by_class``: tracks inside and present now, per class; ``enter_by_class`` and
    ``exit_by_class``: event counts per class.
    """

    name: str
    polygon: tuple[tuple[float, float], ...]
    occupancy: int
    enter_count: int
    exit_count: int
    occupancy_by_class: Mapping[str, int]
    enter_by_class: Mapping[str, int]
    exit_by_class: Mapping[str, int]

    @classmethod
    def of(cls, zone: CountingZone) -> ZoneCounts:
        by_class = zone.occupancy_by_class()
        return cls(
            zone.name,
            tuple((float(x), float(y)) for x, y in np.asarray(zone.polygon, dtype=np.float64)),
            sum(by_class.values()),
            zone.enter_count,
            zone.exit_count,
            by_class,
            dict(zone.class_enter_count),
            dict(zone.class_exit_count),
        )


# ---------------------------------------------------------------------------- engine
def as_configs(counting: CountingConfig | Sequence[CountingConfig] | None) -> tuple[CountingConfig, ...]:
    """One configuration, several or ``None`` as a tuple, with names checked unique.

    Raises:
        DuplicateNameError: two lines/zones share a name.
        CountingSetupError: an element is not a :class:`CountingConfig`.
    """
    configs = () if counting is None else ((counting,) if isinstance(counting, CountingConfig) else tuple(counting))
    seen: set[str] = set()
    for config in configs:
        if not isinstance(config, CountingConfig):
            raise CountingSetupError(f"counting must hold CountingConfig objects, got {type(config).__name__}")
        for spec in (*config.lines, *config.zones):
            if spec.name in seen:
                raise DuplicateNameError(spec.name)
            seen.add(spec.name)
    return configs


class CountingEngine:
    """The lines and zones of one camera, fed with tracked detections frame by frame.

    Lines and zones are given as :class:`CountingConfig` (pixels or normalized coordinates) and
    built for the size of the first frame. Editing them (:meth:`set_configs`) follows three
    rules:

    - a line or zone whose spec (name, geometry in pixels, anchor) is unchanged keeps its
      counter, its counts and the state of the tracks near it;
    - a new or changed one starts from zero (crossings of an old segment say nothing about a
      moved one);
    - a removed zone reports the exits of the objects still inside (as at the end of a stream),
      so every ENTER has its EXIT.

    Args:
        counting: lines and zones (one configuration or several, e.g. command-line lines in
            pixels plus a zone file in normalized coordinates). Names must be unique.
        line_rules, zone_rules: the counting rules of every line and zone.
        max_absent_s: seconds a counter keeps the state of an absent track (> 0).
        class_names: names for ``class_id`` when detections carry no ``data["class_name"]``.

    Raises:
        DuplicateNameError: two lines/zones share a name.

    Thread-safety: :meth:`set_configs` from any thread; everything else from the one thread that
    calls :meth:`update`.
    """

    def __init__(
        self,
        counting: CountingConfig | Sequence[CountingConfig] | None = (),
        line_rules: LineRules | None = None,
        zone_rules: ZoneRules | None = None,
        max_absent_s: float = DEFAULT_MAX_ABSENT_S,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
    ) -> None:
        self._configs = as_configs(counting)
        self._options: dict[str, Any] = {
            "line_rules": line_rules if line_rules is not None else LineRules.robust(),
            "zone_rules": zone_rules if zone_rules is not None else ZoneRules.robust(),
            "max_absent_s": max_absent_s,
            "class_names": class_names,
        }
        self._lines: list[CountingLine] = []
        self._zones: list[CountingZone] = []
        self._built = False
        self._built_specs: dict[str, LineSpec | ZoneSpec] = {}
        self._pending: tuple[CountingConfig, ...] | None = None
        self._pending_lock = threading.Lock()
        #: how many times :meth:`set_configs` took effect
        self.changes = 0

    @property
    def lines(self) -> tuple[CountingLine, ...]:
        """The counting lines (empty until the first frame fixed their pixel geometry)."""
        return tuple(self._lines)

    @property
    def zones(self) -> tuple[CountingZone, ...]:
        """The zones (empty until the first frame)."""
        return tuple(self._zones)

    @property
    def configs(self) -> tuple[CountingConfig, ...]:
        """The configurations in force (the latest :meth:`set_configs` once it took effect)."""
        return self._configs

    def set_configs(self, counting: CountingConfig | Sequence[CountingConfig] | None) -> None:
        """Replace the lines and zones from the next :meth:`update` on (any thread; returns at
        once). See the class docstring for what happens to the counts.

        Raises:
            DuplicateNameError: two lines/zones share a name.
            CountingSetupError: an element is not a :class:`CountingConfig`.
        """
        configs = as_configs(counting)
        with self._pending_lock:
            self._pending = configs

    def update(self, tracks: sv.Detections, timestamp_s: float, frame_index: int,
               frame_wh: tuple[int, int]) -> tuple[CountEvent, ...]:
        """Count one frame of tracked detections.

        Args:
            tracks: the tracker's output (``tracker_id`` set), boxes in the frame's pixels.
            timestamp_s: media time of the frame, seconds, increasing.
            frame_index: index of the frame, increasing.
            frame_wh: ``(width, height)`` of the frame in pixels (builds the counters on the
                first frame; later edits are converted to pixels with it).

        Returns:
            The events of this frame: exits from zones removed by an edit first, then each
            line's and zone's events in order.
        """
        with self._pending_lock:
            pending, self._pending = self._pending, None
        events: list[CountEvent] = []
        if pending is not None:
            events.extend(self._apply(pending, frame_wh, frame_index))
        if not self._built:
            self._build(frame_wh)
        for counter in (*self._lines, *self._zones):
            events.extend(counter.update(tracks, timestamp_s, frame_index))
        return tuple(events)

    def readouts(self) -> tuple[tuple[LineCounts, ...], tuple[ZoneCounts, ...]]:
        """Snapshots of every line and zone now."""
        return tuple(LineCounts.of(line) for line in self._lines), tuple(ZoneCounts.of(zone) for zone in self._zones)

    def finish(self) -> tuple[CountEvent, ...]:
        """End of the stream: the exits of the objects still inside a zone."""
        events: list[CountEvent] = []
        for zone in self._zones:
            events.extend(zone.finish())
        return tuple(events)

    # ------------------------------------------------------------------ building
    def _build(self, frame_wh: tuple[int, int]) -> None:
        width, height = frame_wh
        for counting in self._configs:
            lines, zones = counting.build(width, height, **self._options)
            self._lines.extend(lines)
            self._zones.extend(zones)
        self._built_specs = _pixel_specs(self._configs, width, height)
        self._built = True
        for line in self._lines:
            logger.info("line %r: %s -> %s px", line.name, line.start, line.end)
        for zone in self._zones:
            logger.info("zone %r: %d vertices", zone.name, len(zone.polygon))

    def _apply(self, configs: tuple[CountingConfig, ...], frame_wh: tuple[int, int],
               frame_index: int) -> tuple[CountEvent, ...]:
        """Swap in ``configs``, keeping the counters of unchanged specs; returns the exits of
        zones that were removed."""
        self._configs = configs
        self.changes += 1
        if not self._built:  # the first frame builds them from self._configs
            return ()
        width, height = frame_wh
        new_specs = _pixel_specs(configs, width, height)
        old_lines = {line.name: line for line in self._lines}
        old_zones = {zone.name: zone for zone in self._zones}
        lines: list[CountingLine] = []
        zones: list[CountingZone] = []
        for name, spec in new_specs.items():
            keep = self._built_specs.get(name) == spec
            if isinstance(spec, LineSpec):
                lines.append(old_lines[name] if keep else self._build_one(CountingConfig(lines=(spec,)), frame_wh))
            else:
                zones.append(old_zones[name] if keep else self._build_one(CountingConfig(zones=(spec,)), frame_wh))
        kept_zones = {id(zone) for zone in zones}
        events: list[CountEvent] = []
        for zone in self._zones:
            if id(zone) not in kept_zones:
                events.extend(zone.finish())
        self._lines, self._zones = lines, zones
        changed = sorted(name for name, spec in new_specs.items() if self._built_specs.get(name) != spec)
        removed = sorted(set(self._built_specs) - set(new_specs))
        self._built_specs = new_specs
        logger.info("counting changed at frame %d: new or changed %s, removed %s",
                    frame_index, changed or "none", removed or "none")
        return tuple(events)

    def _build_one(self, config: CountingConfig, frame_wh: tuple[int, int]) -> Any:
        lines, zones = config.build(frame_wh[0], frame_wh[1], **self._options)
        return (lines or zones)[0]


def _pixel_specs(configs: Sequence[CountingConfig], width: int, height: int) -> dict[str, LineSpec | ZoneSpec]:
    """Name -> spec in pixels of a ``width`` x ``height`` frame, lines first, in order."""
    specs: dict[str, LineSpec | ZoneSpec] = {}
    for config in configs:
        pixels = config.to_pixels(width, height)
        for spec in (*pixels.lines, *pixels.zones):
            specs[spec.name] = spec
    return specs
