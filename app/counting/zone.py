"""Polygon zones: occupancy per class, enter/exit events and dwell time of tracks.

The default rules are :meth:`ZoneRules.robust` (for tracker output); ``rules="exact"`` flips the
state on every observation across the boundary. Why: :class:`CountingZone`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import supervision as sv

from app.counting.events import CountEvent, Direction
from app.counting.geometry import (
    Anchor,
    polygon_area_px2,
    polygon_self_intersection,
    polygon_signed_depth_px,
)
from app.counting.line import (
    DEFAULT_MAX_ABSENT_S,
    ROBUST_CONFIRM_OBSERVATIONS,
    ROBUST_HYSTERESIS_PX,
    RULE_PRESETS,
)
from app.counting.tracks import (
    ClassNames,
    ClassVotes,
    FrameClock,
    TrackPresence,
    checked_anchor_points,
    class_names_of,
    tracker_ids_of,
    validate_absence_limits,
)

__all__ = ["CountingZone", "ZoneRules"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ZoneRules:
    """When a track's inside/outside state changes (see :class:`CountingZone`).

    Attributes:
        hysteresis_px: the anchor must get at least this deep inside (or this far outside) the
            polygon before the state changes, pixels, ``>= 0``.
        confirm_observations: ... and be observed this many times in a row on that side of the
            boundary, ``>= 1``.

    Presets, also accepted by name (:meth:`parse`): :meth:`exact` (the field defaults,
    ``ZoneRules()``: the state is "anchor strictly inside") and :meth:`robust` (the default of
    :class:`CountingZone`; why in its docstring).

    Raises:
        ValueError: a value out of range (message names it).
    """

    hysteresis_px: float = 0.0
    confirm_observations: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hysteresis_px) and self.hysteresis_px >= 0):
            raise ValueError(f"hysteresis_px must be a finite number >= 0, got {self.hysteresis_px}")
        if isinstance(self.confirm_observations, bool) or not isinstance(
            self.confirm_observations, int
        ) or self.confirm_observations < 1:
            raise ValueError(
                f"confirm_observations must be an integer >= 1, got {self.confirm_observations!r}"
            )

    @classmethod
    def exact(cls) -> "ZoneRules":
        """The state follows every observation: inside exactly when the anchor is strictly
        inside (for clean trajectories)."""
        return cls()

    @classmethod
    def robust(cls) -> "ZoneRules":
        """For tracker output (the :class:`CountingZone` default): the jitter suppression of
        ``LineRules.robust()``, 4 observations in a row, one of them 4 px or more from the
        boundary (values from the MOT15 line benchmark, ``benchmarks/counting.py``)."""
        return cls(hysteresis_px=ROBUST_HYSTERESIS_PX, confirm_observations=ROBUST_CONFIRM_OBSERVATIONS)

    @classmethod
    def parse(cls, value: "ZoneRules | str", owner: str = "zone") -> "ZoneRules":
        """Return ``value`` itself, or the preset it names (``"exact"`` or ``"robust"``;
        ``"robust_stitched"`` means ``"robust"``: zones do not stitch tracks).

        Raises:
            ValueError: neither a :class:`ZoneRules` nor a preset name (names ``owner``).
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            if key in RULE_PRESETS:
                return cls.exact() if key == "exact" else cls.robust()
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"{owner}: rules must be a ZoneRules or one of "
            f"{', '.join(map(repr, RULE_PRESETS))}, got {shown}"
        )


@dataclass(slots=True)
class _ZoneTrackState:
    presence: TrackPresence
    votes: ClassVotes = field(default_factory=ClassVotes)
    inside: bool = False
    #: Time the current stay inside began (first inside observation of the confirming run).
    entered_s: float = 0.0
    #: Current run of consecutive observations on one side of the boundary.
    run_inside: bool = False
    run_observations: int = 0
    run_max_abs_depth_px: float = 0.0
    run_timestamp_s: float = 0.0
    run_frame_index: int = 0


class CountingZone:
    """A named polygon that tracks objects inside it: occupancy, enter/exit events, dwell time.

    **Inside/outside.** Each track is reduced to one anchor point per frame (``anchor``,
    bottom-centre by default). Its *depth* is the signed distance of the anchor to the polygon
    boundary, positive inside (even-odd rule); an anchor exactly on the boundary (depth 0) has no
    side and changes nothing. Every track starts *outside*. Its observations since it last moved
    across the boundary form a *run*; when a run on the side opposite to the track's state has
    ``rules.confirm_observations`` observations, one of them at least ``rules.hysteresis_px``
    from the boundary, the state flips and an ENTER or EXIT event is emitted, stamped with the
    time and frame of the run's first observation (when the anchor moved across). Exits carry the
    dwell time, exit stamp minus enter stamp. With ``ZoneRules.exact()`` the state is simply
    "anchor strictly inside" and events come in the frame they happen; with
    ``ZoneRules.robust()`` (the default) jitter about the boundary produces no events.

    **Default rules: robust.** Without ``rules`` a zone uses :meth:`ZoneRules.robust`, for the
    reason :class:`~app.counting.CountingLine` does: the anchor of a tracked box jitters by
    several pixels per frame, and with the exact rule every jitter across the boundary is an
    EXIT plus an ENTER. Measured for issue 11 on the 11 MOT15 train sequences (public
    detections), a zone covering the lower half of each frame: the ground-truth trajectories
    give 1050 enter/exit events; our ByteTrack (default parameters) gives 1650 (+57 %) with
    the exact rule and 1104 (+5 %) with the robust one. Pass ``rules="exact"`` for clean
    trajectories.

    **Polygon.** Vertices in order around the zone. A self-intersecting polygon ("bow-tie") is
    usually vertices out of order: it is refused when its signed area cancels to zero, and
    otherwise accepted with a warning (inside is then the even-odd rule: regions its outline
    wraps twice are outside).

    A track first seen inside the zone enters as soon as that is confirmed. Zones test positions,
    not paths: an object that passes through a zone between two observations is not seen in it.

    **Absence.** A track missing from a frame keeps its state (occlusion does not make it exit).
    When its state is evicted (absent for more than ``max_absent_s`` seconds or
    ``max_absent_frames`` frames) while inside, an EXIT event is emitted by the ``update`` that
    evicts it, stamped with the time and frame the track was *last seen*, with the dwell time up
    to then; :meth:`finish` does the same for every track still inside at the end of a stream.

    **Occupancy** counts tracks that are inside and present in the latest frame, per majority
    class (ties: the class seen first; see :class:`~app.counting.line.CountingLine`).

    Args:
        polygon: ``(m, 2)`` vertices in pixels, ``m >= 3``, finite, positive area.
        name: reported as the ``zone`` of each event.
        anchor: box point that represents the object.
        rules: hysteresis and confirmation (:class:`ZoneRules`), or a preset name
            (``"exact"``, ``"robust"``); default :meth:`ZoneRules.robust`.
        max_absent_s: seconds a track's state survives without observations (``None``: no limit).
        max_absent_frames: the same in frames (``None``: no limit); at least one must be set.
        class_names: names for ``class_id`` when the detections carry no ``data["class_name"]``.

    Raises:
        ValueError: a parameter is out of range, or the polygon is degenerate (collinear, or
            self-intersecting with zero area); the message names the zone.
    """

    def __init__(
        self,
        polygon: npt.ArrayLike,
        name: str = "zone",
        *,
        anchor: Anchor | str = Anchor.BOTTOM_CENTER,
        rules: ZoneRules | str = ZoneRules.robust(),
        max_absent_s: float | None = DEFAULT_MAX_ABSENT_S,
        max_absent_frames: int | None = None,
        class_names: ClassNames | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"zone name must be a non-empty string, got {name!r}")
        self.polygon = _validated_polygon(polygon, name)
        rules = ZoneRules.parse(rules, f"zone {name!r}")
        validate_absence_limits(max_absent_s, max_absent_frames)
        self.name = name
        self.anchor = Anchor.parse(anchor)
        self.rules = rules
        self.max_absent_s = max_absent_s
        self.max_absent_frames = max_absent_frames
        self.class_names = class_names
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and zero all counts (emits nothing)."""
        self._tracks: dict[int, _ZoneTrackState] = {}
        self._clock = FrameClock()
        self._present: frozenset[int] = frozenset()
        self.enter_count = 0
        self.exit_count = 0
        self.class_enter_count: dict[str, int] = {}
        self.class_exit_count: dict[str, int] = {}

    # ------------------------------------------------------------ read-outs
    @property
    def tracked_ids(self) -> frozenset[int]:
        """IDs whose state is currently kept (present or absent but not yet evicted)."""
        return frozenset(self._tracks)

    def occupancy_by_class(self) -> dict[str, int]:
        """``{class_name: n}`` of tracks inside the zone and present in the latest frame."""
        occupancy: dict[str, int] = {}
        for track_id in sorted(self._present):
            state = self._tracks[track_id]
            if state.inside:
                name = state.votes.majority
                occupancy[name] = occupancy.get(name, 0) + 1
        return occupancy

    @property
    def occupancy(self) -> int:
        """Number of tracks inside the zone and present in the latest frame."""
        return sum(self.occupancy_by_class().values())

    def current_dwell_s(self) -> dict[int, float]:
        """``{track_id: seconds}`` since entering, for tracks inside and present in the latest
        frame, measured to the latest frame's timestamp."""
        now = self._clock.timestamp_s
        if now is None:
            return {}
        return {
            track_id: now - self._tracks[track_id].entered_s
            for track_id in sorted(self._present)
            if self._tracks[track_id].inside
        }

    # --------------------------------------------------------------- update
    def update(
        self,
        tracks: sv.Detections,
        timestamp_s: float,
        frame_index: int | None = None,
    ) -> list[CountEvent]:
        """Feed one frame of tracks; return this frame's enter/exit events.

        Exits of evicted tracks come first (stamped with their last-seen time), then the events
        of the present tracks in row order. Arguments and errors as
        :meth:`app.counting.CountingLine.update`.
        """
        owner = f"CountingZone {self.name!r}"
        ids = tracker_ids_of(tracks, owner)
        classes = class_names_of(tracks, self.class_names)
        points = checked_anchor_points(tracks, self.anchor, owner)
        frame_index = self._clock.advance(timestamp_s, frame_index)
        timestamp_s = float(timestamp_s)
        events = self._evict(timestamp_s, frame_index)
        self._present = frozenset(ids.tolist())
        if len(ids) == 0:
            return events
        depths = polygon_signed_depth_px(points, self.polygon)
        for track_id, class_name, depth in zip(ids.tolist(), classes, depths.tolist()):
            state = self._tracks.get(track_id)
            if state is None:
                state = _ZoneTrackState(presence=TrackPresence(timestamp_s, frame_index))
                self._tracks[track_id] = state
            state.presence.see(timestamp_s, frame_index)
            state.votes.add(class_name)
            event = self._step(state, track_id, depth, timestamp_s, frame_index)
            if event is not None:
                events.append(event)
        return events

    def _step(
        self,
        state: _ZoneTrackState,
        track_id: int,
        depth: float,
        timestamp_s: float,
        frame_index: int,
    ) -> CountEvent | None:
        """Advance one track by one anchor depth; return an event if its state flips."""
        if depth == 0.0:
            return None  # on the boundary: no side
        inside = depth > 0
        if state.run_observations == 0 or state.run_inside != inside:
            state.run_inside = inside
            state.run_observations = 1
            state.run_max_abs_depth_px = abs(depth)
            state.run_timestamp_s = timestamp_s
            state.run_frame_index = frame_index
        else:
            state.run_observations += 1
            state.run_max_abs_depth_px = max(state.run_max_abs_depth_px, abs(depth))
        if (
            state.run_inside == state.inside
            or state.run_observations < self.rules.confirm_observations
            or state.run_max_abs_depth_px < self.rules.hysteresis_px
        ):
            return None
        state.inside = state.run_inside
        if state.inside:
            state.entered_s = state.run_timestamp_s
            direction = Direction.ENTER
        else:
            direction = Direction.EXIT
        return self._record(
            direction, state, track_id, state.run_timestamp_s, state.run_frame_index
        )

    def finish(self) -> list[CountEvent]:
        """End of stream: exit every track still inside (at its last-seen time) and forget it."""
        events = [
            self._record(
                Direction.EXIT,
                state,
                track_id,
                state.presence.last_seen_s,
                state.presence.last_seen_frame,
            )
            for track_id, state in self._tracks.items()
            if state.inside
        ]
        self._tracks.clear()
        self._present = frozenset()
        return events

    def _record(
        self,
        direction: Direction,
        state: _ZoneTrackState,
        track_id: int,
        timestamp_s: float,
        frame_index: int,
    ) -> CountEvent:
        class_name = state.votes.majority
        dwell_s: float | None = None
        if direction is Direction.ENTER:
            self.enter_count += 1
            self.class_enter_count[class_name] = self.class_enter_count.get(class_name, 0) + 1
        else:
            self.exit_count += 1
            self.class_exit_count[class_name] = self.class_exit_count.get(class_name, 0) + 1
            dwell_s = timestamp_s - state.entered_s
        event = CountEvent(
            timestamp_s, frame_index, self.name, track_id, class_name, direction, dwell_s
        )
        logger.debug("zone %r: %s", self.name, event)
        return event

    def _evict(self, timestamp_s: float, frame_index: int) -> list[CountEvent]:
        events: list[CountEvent] = []
        expired = [
            track_id
            for track_id, state in self._tracks.items()
            if state.presence.expired(
                timestamp_s, frame_index, self.max_absent_s, self.max_absent_frames
            )
        ]
        for track_id in expired:
            state = self._tracks.pop(track_id)
            if state.inside:
                events.append(
                    self._record(
                        Direction.EXIT,
                        state,
                        track_id,
                        state.presence.last_seen_s,
                        state.presence.last_seen_frame,
                    )
                )
        return events

    def __repr__(self) -> str:
        return (
            f"CountingZone(name={self.name!r}, vertices={len(self.polygon)}, "
            f"occupancy={self.occupancy}, enter={self.enter_count}, exit={self.exit_count})"
        )


def _validated_polygon(polygon: npt.ArrayLike | Sequence[Sequence[float]], name: str) -> np.ndarray:
    try:
        poly = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"zone {name!r}: polygon must be (m, 2) numbers, got {polygon!r}") from None
    if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
        raise ValueError(f"zone {name!r}: polygon must have shape (m >= 3, 2), got {poly.shape}")
    if not np.isfinite(poly).all():
        raise ValueError(f"zone {name!r}: polygon has non-finite coordinates")
    problem = polygon_problem(poly, name)
    if problem is not None:
        raise ValueError(problem)
    warning = self_intersection_warning(poly, name)
    if warning is not None:
        logger.warning("%s", warning)
    return poly


def polygon_problem(polygon: npt.ArrayLike, name: str) -> str | None:
    """Why a zone's polygon cannot be used (names the zone and what to do), or ``None``.

    Zero signed area is refused: all vertices on one line ("collinear"), or a self-intersecting
    outline whose parts cancel, such as the bow-tie ``(0, 0), (10, 10), (10, 0), (0, 10)``.
    """
    if polygon_area_px2(polygon) != 0.0:
        return None
    crossing = polygon_self_intersection(polygon)
    if crossing is not None:
        return (
            f"zone {name!r}: polygon is self-intersecting ({_edges(crossing, polygon)}) and "
            "encloses no area; list its vertices in order around the zone"
        )
    return (
        f"zone {name!r}: polygon has zero area (points collinear); "
        "give at least 3 points that are not on one line"
    )


def self_intersection_warning(polygon: npt.ArrayLike, name: str) -> str | None:
    """A warning for a usable but self-intersecting polygon (names the zone), or ``None``."""
    crossing = polygon_self_intersection(polygon)
    if crossing is None:
        return None
    return (
        f"zone {name!r}: polygon is self-intersecting ({_edges(crossing, polygon)}); areas its "
        "outline wraps twice count as outside (even-odd rule); list the vertices in order around "
        "the zone if that is not intended"
    )


def _edges(pair: tuple[int, int], polygon: npt.ArrayLike) -> str:
    """``"edge 0-1 meets edge 2-3"``: edges by their vertex numbers (0-based)."""
    m = len(np.asarray(polygon))
    i, j = pair
    return f"edge {i}-{(i + 1) % m} meets edge {j}-{(j + 1) % m}"
