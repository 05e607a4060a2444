"""A :class:`~app.pipeline.Pipeline` whose lines and zones can be changed while it runs.

In the GUI the user draws, drags, renames and deletes lines and zones on the live picture; the
counts must follow without restarting the stream (a restart would lose the tracker's state and,
for a file, the position). :meth:`EditableCountingPipeline.set_counting` hands a new
configuration over from any thread; the inference thread applies it right before the next frame
is counted, so counters are only ever touched by that thread:

- a line or zone whose spec (name, geometry in pixels, anchor) is unchanged keeps its counter,
  its counts and the state of the tracks near it;
- a new or changed one starts from zero (moving a line restarts its counts: crossings of the
  old segment say nothing about the new one);
- a removed zone reports the exits of the objects still inside (as at the end of a stream), so
  every ENTER in the events has its EXIT.

This reaches into the pipeline's counter lists (``_counting``, ``_lines``, ``_zones``) and
wraps ``_infer``; it belongs in :class:`~app.pipeline.Pipeline` itself as a public
``set_counting`` and is kept here, small and tested (``tests/test_gui_live_counting.py``), until
it moves there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence

from app.counting import CountEvent, CountingConfig, CountingLine, CountingZone, LineSpec, ZoneSpec
from app.frames import Frame
from app.pipeline import Pipeline, PipelineConfigError

__all__ = ["EditableCountingPipeline"]

logger = logging.getLogger(__name__)


class EditableCountingPipeline(Pipeline):
    """:class:`~app.pipeline.Pipeline` plus :meth:`set_counting` (same arguments and behaviour
    otherwise)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - exactly Pipeline's
        super().__init__(*args, **kwargs)
        self._pending_counting: tuple[CountingConfig, ...] | None = None
        self._pending_lock = threading.Lock()
        self._built_specs: dict[str, LineSpec | ZoneSpec] = {}
        self.counting_changes = 0

    def set_counting(self, counting: CountingConfig | Sequence[CountingConfig] | None) -> None:
        """Replace the lines and zones from the next frame on (thread-safe, returns at once).

        Args:
            counting: the new lines and zones (``None`` or ``()``: none). Names must be unique.

        Raises:
            PipelineConfigError: duplicate names or an object that is not a CountingConfig.
        """
        configs = _as_configs(counting)
        _check_unique(configs)
        with self._pending_lock:
            self._pending_counting = configs

    # ------------------------------------------------------------------ inference thread
    def _infer(self, captured):  # noqa: ANN001, ANN202 - Pipeline's private signature
        with self._pending_lock:
            pending, self._pending_counting = self._pending_counting, None
        removed_zone_events: tuple[CountEvent, ...] = ()
        if pending is not None:
            removed_zone_events = self._apply_counting(pending, captured.frame)
        inferred = super()._infer(captured)
        if removed_zone_events:
            inferred = dataclasses.replace(inferred, events=removed_zone_events + inferred.events)
        return inferred

    def _build_counters(self, frame: Frame) -> None:
        super()._build_counters(frame)
        height, width = frame.shape_hw
        self._built_specs = _pixel_specs(self._counting, width, height)

    def _apply_counting(self, configs: tuple[CountingConfig, ...], frame: Frame) -> tuple[CountEvent, ...]:
        """Swap in ``configs``, keeping the counters of unchanged specs (inference thread)."""
        self._counting = configs
        self.counting_changes += 1
        if not self._counters_built:  # the first frame builds them from self._counting
            return ()
        height, width = frame.shape_hw
        new_specs = _pixel_specs(configs, width, height)
        old_lines = {line.name: line for line in self._lines}
        old_zones = {zone.name: zone for zone in self._zones}
        lines: list[CountingLine] = []
        zones: list[CountingZone] = []
        for name, spec in new_specs.items():
            keep = self._built_specs.get(name) == spec
            if isinstance(spec, LineSpec):
                lines.append(old_lines[name] if keep else self._build_line(spec, width, height))
            else:
                zones.append(old_zones[name] if keep else self._build_zone(spec, width, height))
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
                    frame.index, changed or "none", removed or "none")
        return tuple(events)

    def _build_line(self, spec: LineSpec, width: int, height: int) -> CountingLine:
        lines, _ = CountingConfig(lines=(spec,)).build(width, height, **self._counter_options())
        return lines[0]

    def _build_zone(self, spec: ZoneSpec, width: int, height: int) -> CountingZone:
        _, zones = CountingConfig(zones=(spec,)).build(width, height, **self._counter_options())
        return zones[0]

    def _counter_options(self) -> dict:
        return {
            "line_rules": self.config.line_rules,
            "zone_rules": self.config.zone_rules,
            "max_absent_s": self.config.max_absent_s,
            "class_names": self._class_names,
        }


def _as_configs(counting: CountingConfig | Sequence[CountingConfig] | None) -> tuple[CountingConfig, ...]:
    if counting is None:
        return ()
    return (counting,) if isinstance(counting, CountingConfig) else tuple(counting)


def _check_unique(configs: tuple[CountingConfig, ...]) -> None:
    seen: set[str] = set()
    for config in configs:
        if not isinstance(config, CountingConfig):
            raise PipelineConfigError(f"counting must hold CountingConfig objects, got {type(config).__name__}")
        for spec in (*config.lines, *config.zones):
            if spec.name in seen:
                raise PipelineConfigError(f"line/zone name {spec.name!r} is used twice")
            seen.add(spec.name)


def _pixel_specs(configs: Sequence[CountingConfig], width: int, height: int) -> dict[str, LineSpec | ZoneSpec]:
    """Name -> spec in pixels of a ``width`` x ``height`` frame, lines first, in order."""
    specs: dict[str, LineSpec | ZoneSpec] = {}
    for config in configs:
        pixels = config.to_pixels(width, height)
        for spec in (*pixels.lines, *pixels.zones):
            specs[spec.name] = spec
    return specs
