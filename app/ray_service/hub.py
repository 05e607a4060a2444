"""The hub actor: the outputs every camera shares, and the record camera restarts resume from.

One hub per service, placed on the driver's node (the events file is a path there). Camera
actors hand it each frame's events (:meth:`Hub.write`); it writes them, in the order received,
to the outputs of the cameras file (events file, MQTT, webhook), opened by the same code as the
in-process service (:class:`app.service.ServiceOutputs`), and keeps per camera the frame
index of the last event it handed to them, the number of events and their totals
(:class:`ResumePoint`).

Durability: the events file is the durable record. The SQLite sink commits within
``sync_interval_s`` (0.5 s) of a write, so what the hub has handed to it survives the death of a
camera actor at once, and the death of the hub itself up to the last 0.5 s. A restarted hub
rebuilds its record from the events file: the events appended since the service started (the
``events_baseline`` events before them belong to earlier runs). Without an events file the record
lives in the hub's memory only: camera restarts still resume, a hub restart forgets.

Output failures are isolated as the pipeline isolates its sinks: an output that fails is logged
once, skipped from then on, and the events it missed are counted (:meth:`Hub.sink_errors`); the
others, and the record, get every event.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.cameras import CamerasFile
from app.counting import CountEvent
from app.counting.events import wall_time_epoch_s
from app.service import ServiceOutputs
from app.sinks import EventSinkError, read_events

__all__ = ["Hub", "ResumePoint", "durable_event_count", "event_key"]

logger = logging.getLogger(__name__)

#: (zone, class_name, direction) -> number of events.
Totals = Mapping[tuple[str, str, str], int]


@dataclass(frozen=True)
class ResumePoint:
    """Where a restarted camera takes up its work.

    Attributes:
        camera_id: the camera.
        last_frame_index: frame index of the last event of this camera handed to the outputs
            in this run of the service (its events of this frame and of every frame before are
            written); ``None`` when it has none yet.
        events: events of this camera handed to the outputs in this run; also the sequence
            number the camera's next event gets (its events are numbered from 0 in the order
            the camera produces them).
        totals: those events counted by ``(zone, class_name, direction)``.
        wall_start_s: the wall time (seconds since 1970, UTC) of media time 0 of the camera's
            first run, from its first event (``wall_time - timestamp_s``); ``None`` without
            events. A file camera that resumes stamps its new events from it, as the first run
            would have.
    """

    camera_id: str
    last_frame_index: int | None = None
    events: int = 0
    totals: Totals = field(default_factory=dict)
    wall_start_s: float | None = None
    last_event: tuple[Any, ...] | None = None


class _Record:
    """What the hub knows of one camera's events (see :class:`ResumePoint`)."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.last_frame_index: int | None = None
        self.last_event: tuple[Any, ...] | None = None
        self.events = 0
        self.totals: dict[tuple[str, str, str], int] = {}
        self.wall_start_s: float | None = None

    def add(self, event: CountEvent) -> None:
        self.last_frame_index = event.frame_index
        self.last_event = event_key(event)
        self.events += 1
        key = (event.zone, event.class_name, event.direction.value)
        self.totals[key] = self.totals.get(key, 0) + 1
        if self.wall_start_s is None and event.wall_time is not None:
            self.wall_start_s = wall_time_epoch_s(event.wall_time) - event.timestamp_s

    def point(self) -> ResumePoint:
        return ResumePoint(self.camera_id, self.last_frame_index, self.events, dict(self.totals), self.wall_start_s,
                           self.last_event)


def event_key(event: CountEvent) -> tuple[Any, ...]:
    """What identifies an event of a camera across a replay: frame, zone, track, direction."""
    return (event.frame_index, event.zone, event.track_id, event.direction.value)


@dataclass
class _Output:
    sink: Any  # app.service.SharedSink: write_many, path, failure
    error: BaseException | None = None
    events_lost: int = 0


def durable_event_count(path: Path | None) -> int:
    """Events already in the events file at ``path`` (0 for none or a missing file): the
    baseline a hub skips when it rebuilds its record.

    Raises:
        ValueError, UnsupportedEventFileError: the file is not an events file (see
            :func:`app.sinks.read_events`).
    """
    if path is None or not Path(path).exists():
        return 0
    return len(read_events(path))


class Hub:
    """The hub (see the module docstring). Plain class; :class:`app.ray_service.RayService`
    makes it a Ray actor (one call at a time, so the outputs see one writer).

    Args:
        cameras: the cameras file (its ``outputs`` section is opened here).
        events_baseline: events in the events file before this service started
            (:func:`durable_event_count`, read by the driver before the hub first starts, so that
            a restarted hub gets the same number).

    Raises:
        the errors of opening the outputs (:class:`app.sinks.EventSinkError`, MQTT, webhook) and
        of reading the events file back (``ValueError``).
    """

    def __init__(self, cameras: CamerasFile, events_baseline: int = 0) -> None:
        from app.ray_service._ray import require_ray, was_restarted

        ray = require_ray()
        reconstructed = was_restarted(ray.get_runtime_context()) if ray.is_initialized() else False
        self._records: dict[str, _Record] = {}
        self._starts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        path = cameras.outputs.events
        recovered = 0
        if path is not None and path.exists():  # before the sink opens it: only committed events
            for event in read_events(path)[events_baseline:]:
                if event.camera_id is not None:
                    self._record(event.camera_id).add(event)
                    recovered += 1
        if reconstructed:
            logger.warning("hub restarted: %d events of this run recovered from %s", recovered, path)
        # the driver serves /metrics and /status: no metrics server here
        self._host = ServiceOutputs.open(dataclasses.replace(cameras.outputs, metrics=None))
        self._outputs = [_Output(sink) for sink in self._host.sinks]
        logger.info("hub: outputs %s", ", ".join(str(o.sink.path) for o in self._outputs) or "none")

    # ------------------------------------------------------------------ events
    def write(self, camera_id: str, first_seq: int, events: Sequence[CountEvent]) -> int:
        """Hand one frame's ``events`` of ``camera_id`` to every healthy output, in order, and
        record them. Returns the camera's next sequence number.

        ``first_seq`` is the sequence number of ``events[0]`` (see :attr:`ResumePoint.events`):
        events the hub already has (a camera that resent a batch whose answer it did not get) are
        dropped, so the outputs get each event once. A gap (events numbered past the hub's count:
        the hub restarted and lost uncommitted events) is logged and accepted. Output failures are
        isolated (module docstring), never raised.
        """
        with self._lock:
            record = self._record(camera_id)
            if first_seq > record.events:
                logger.warning("camera %s: events %d to %d were lost by a hub restart (not committed)",
                               camera_id, record.events, first_seq - 1)
                record.events = first_seq
            fresh = list(events[max(0, record.events - first_seq):])
            if len(fresh) < len(events):
                logger.info("camera %s: %d event(s) already written, dropped", camera_id, len(events) - len(fresh))
            if not fresh:
                return record.events
            for event in fresh:
                record.add(event)
            for output in self._outputs:
                if output.error is None:
                    failure = getattr(output.sink, "failure", None)
                    if isinstance(failure, BaseException):
                        self._fail(output, failure)
                if output.error is not None:
                    output.events_lost += len(fresh)
                    continue
                try:
                    output.sink.write_many(fresh)
                except EventSinkError as exc:
                    output.events_lost += len(fresh)
                    self._fail(output, exc)
            return record.events

    def publish_counts(self, camera_id: str, counts: Mapping[str, Any]) -> None:
        """Publish a camera's counts to MQTT (retained), when the file has an MQTT output."""
        if self._host.mqtt is not None:
            self._host.mqtt.publish_counts(camera_id, counts)

    def resume_point(self, camera_id: str) -> ResumePoint:
        """Where ``camera_id`` resumes (see :class:`ResumePoint`)."""
        with self._lock:
            return self._record(camera_id).point()

    def sink_errors(self) -> list[str]:
        """One line per failed output: its name, the error and the events it missed."""
        return [f"{o.sink.path}: {o.error} ({o.events_lost} events not written to it)"
                for o in self._outputs if o.error is not None]

    # ------------------------------------------------------------------ restarts
    def note_start(self, kind: str, name: str, node_id: str, reconstructed: bool) -> int:
        """An actor (``kind`` ``camera`` or ``detector``) started on ``node_id``; returns how
        many times it has been restarted. Every restart is logged here, once."""
        with self._lock:
            key = (kind, name)
            starts = self._starts.get(key, 0) + 1
            if reconstructed and starts == 1:  # the hub restarted too and missed earlier starts
                starts = 2
            self._starts[key] = starts
        if starts > 1:
            logger.warning("%s actor %s restarted on node %s (restart %d)", kind, name, node_id[:12], starts - 1)
        return starts - 1

    def restarts(self) -> dict[str, dict[str, int]]:
        """``{"camera": {id: restarts}, "detector": {name: restarts}}``."""
        out: dict[str, dict[str, int]] = {"camera": {}, "detector": {}}
        with self._lock:
            for (kind, name), starts in self._starts.items():
                out.setdefault(kind, {})[name] = starts - 1
        return out

    def close(self) -> list[str]:
        """Flush and close every output (events file synced). Returns :meth:`sink_errors`."""
        self._host.close()
        return self.sink_errors()

    # ------------------------------------------------------------------ helpers
    def _record(self, camera_id: str) -> _Record:
        record = self._records.get(camera_id)
        if record is None:
            record = self._records[camera_id] = _Record(camera_id)
        return record

    def _fail(self, output: _Output, error: BaseException) -> None:
        output.error = error
        logger.error("output %s failed: %s; the other outputs and the cameras go on", output.sink.path, error)
