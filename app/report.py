"""Counts per time bucket, and the ``yolov7-track report`` command.

::

    yolov7-track report EVENTS.sqlite|.csv|.jsonl [--bucket 5min|15min|1h|1d] [--format csv|json]
                        [--camera ID] [--from ISO] [--to ISO]

prints one row per (bucket, camera, line or zone, class, direction) with the number of events in
it, to stdout, sorted by bucket start, then camera, zone, class and direction. Buckets with no
event are not listed.

Buckets (see :mod:`app.buckets`). An event with a ``wall_time`` is counted in the UTC bucket of
that time: buckets are aligned on the UTC epoch (15 min: ``:00``, ``:15``, ``:30``, ``:45``; 1 d:
UTC midnight), and ``bucket_start`` is ISO 8601 UTC (``2026-12-06T13:15:00Z``), ``clock`` is
``wall``. An event **without** a wall time (a video file, or a file written before wall times
existed) falls back to its media time ``timestamp_s``: buckets count from the start of the
media (``[0, 900)``, ``[900, 1800)``, ... for 15 min), ``bucket_start`` is those seconds as an
integer (``900``), ``clock`` is ``media``. The two clocks are never summed together.

Where the counts come from. A SQLite events file keeps a ``counts`` table per 5 minutes,
written in the same transaction as the events (:class:`app.sinks.SqliteEventSink`); the report
reads that table (coarser buckets are sums of whole 5-minute buckets), so it costs the same for
a year of events as for an hour. A SQLite file of an earlier version without that table, a CSV
or a JSONL file is read event by event (:func:`app.sinks.read_events`) and bucketed here, with
the same result.

Filters. ``--camera ID`` keeps the events of that camera (events without a camera never match).
``--from``/``--to`` (ISO 8601; UTC when no offset is given; ``Z`` accepted) keep the buckets
whose **start** lies in ``[FROM, TO)``, so a bucket is always reported whole, never cut; media-time
buckets cannot be placed in UTC and are left out when either is given (a warning says how many).

Library use: :func:`bucket_counts` (events in memory), :func:`read_counts` (a file),
:func:`format_rows`. Everything here is pure or reads files only: thread-safe.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.buckets import COUNTS_BUCKET_S, Clock, event_bucket, floor_bucket
from app.counting.events import CountEvent, Direction
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "BUCKETS",
    "REPORT_FIELDS",
    "REPORT_FORMATS",
    "CountRow",
    "ReportError",
    "bucket_counts",
    "bucket_seconds",
    "format_rows",
    "read_counts",
    "report_main",
]

logger = logging.getLogger(__name__)

#: Bucket names the report accepts, with their length in seconds.
BUCKETS: dict[str, int] = {"5min": 300, "15min": 900, "1h": 3600, "1d": 86400}
#: Output formats of :func:`format_rows` and ``--format``.
REPORT_FORMATS = ("csv", "json")
#: Columns of the report (CSV header, JSON keys), in order.
REPORT_FIELDS: tuple[str, ...] = (
    "bucket_start", "clock", "camera_id", "zone", "class_name", "direction", "count",
)
# Every bucket is a whole number of the SQLite counts table's buckets, so it is their exact sum.
assert all(length % COUNTS_BUCKET_S == 0 for length in BUCKETS.values())


class ReportError(Yolov7TrackError, ValueError):
    """The report cannot be made: missing or foreign events file, bad bucket, bad filter. The
    message is one line that names the file or the option."""


@dataclass(frozen=True, slots=True)
class CountRow:
    """How many events fell in one bucket for one (camera, zone, class, direction).

    Attributes:
        clock: :attr:`Clock.WALL` (``bucket_start_s`` is UTC epoch seconds) or
            :attr:`Clock.MEDIA` (media seconds; events without a wall time).
        bucket_start_s: start of the bucket on that clock, whole seconds (a multiple of the
            bucket length).
        camera_id: the events' camera, ``None`` for events without one.
        zone: name of the line or zone.
        class_name: the events' class.
        direction: the events' direction.
        count: number of events, ``>= 1``.
    """

    clock: Clock
    bucket_start_s: int
    camera_id: str | None
    zone: str
    class_name: str
    direction: Direction
    count: int

    @property
    def bucket_start(self) -> str | int:
        """``2026-12-06T13:15:00Z`` (UTC) on the wall clock, seconds (``900``) on the media clock."""
        if self.clock is Clock.WALL:
            return datetime.fromtimestamp(self.bucket_start_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.bucket_start_s

    def as_dict(self) -> dict[str, Any]:
        """The row with the keys :data:`REPORT_FIELDS`, JSON-ready."""
        return {
            "bucket_start": self.bucket_start,
            "clock": self.clock.value,
            "camera_id": self.camera_id,
            "zone": self.zone,
            "class_name": self.class_name,
            "direction": self.direction.value,
            "count": self.count,
        }

    def _sort_key(self) -> tuple[Any, ...]:
        return (self.clock is Clock.MEDIA, self.bucket_start_s, self.camera_id or "", self.zone,
                self.class_name, self.direction.value)


def bucket_seconds(bucket: str) -> int:
    """Length in seconds of a bucket name of :data:`BUCKETS`.

    Raises:
        ReportError: an unknown name (the message lists the known ones).
    """
    try:
        return BUCKETS[bucket]
    except (KeyError, TypeError):
        raise ReportError(f"--bucket {bucket!r}: choose one of {', '.join(BUCKETS)}") from None


def bucket_counts(events: Iterable[CountEvent], bucket: str) -> list[CountRow]:
    """Count ``events`` per (bucket, camera, zone, class, direction) (rules in the module
    docstring: wall-clock UTC buckets for events with a ``wall_time``, media-time buckets
    otherwise). Rows are sorted: wall clock first, then by bucket start, camera, zone, class and
    direction; a bucket without events has no row.

    Args:
        events: any iterable of events, read once.
        bucket: a name of :data:`BUCKETS` (``"5min"``, ``"15min"``, ``"1h"``, ``"1d"``).

    Raises:
        ReportError: unknown ``bucket``.
    """
    bucket_s = bucket_seconds(bucket)
    totals: dict[tuple[Clock, int, str | None, str, str, Direction], int] = {}
    for event in events:
        clock, start_s = event_bucket(event, bucket_s)
        key = (clock, start_s, event.camera_id, event.zone, event.class_name, event.direction)
        totals[key] = totals.get(key, 0) + 1
    return _sorted_rows(totals)


def read_counts(
    path: str | Path,
    bucket: str = "15min",
    *,
    camera_id: str | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> list[CountRow]:
    """The report of an events file: :func:`bucket_counts` of its events, filtered.

    A SQLite file is read from its ``counts`` table (or from its events when it has none: a file
    of an earlier version); CSV and JSONL files from their events.

    Args:
        path: an events file (``.sqlite``/``.sqlite3``/``.db``, ``.csv``, ``.jsonl``/``.ndjson``).
        bucket: a name of :data:`BUCKETS`.
        camera_id: keep only this camera's rows (``None``: every row).
        start_s, end_s: keep only wall-clock buckets whose start lies in ``[start_s, end_s)``, UTC
            epoch seconds (``None``: unbounded on that side). When either is given, media-clock
            rows are left out (with a warning).

    Raises:
        ReportError: unknown ``bucket``; ``path`` missing, of an unknown extension, or not an
            events file of ours; ``start_s >= end_s``.
    """
    bucket_s = bucket_seconds(bucket)
    if start_s is not None and end_s is not None and start_s >= end_s:
        raise ReportError(f"start_s {start_s} must be before end_s {end_s} (UTC epoch seconds)")
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such events file" if not path.exists() else f"{path}: not a file")
    from app import sinks  # imported on use: the sinks are not needed to count events in memory

    suffix = path.suffix.lower()
    rows: list[CountRow] | None = None
    if suffix in (".sqlite", ".sqlite3", ".db"):
        rows = _read_sqlite_counts(path, bucket_s, camera_id)
    if rows is None:
        try:
            events = sinks.read_events(path)
        except sinks.UnsupportedEventFileError:
            raise ReportError(
                f"{path}: unsupported extension {path.suffix!r}; the report reads .sqlite, .sqlite3, "
                ".db, .csv, .jsonl and .ndjson events files"
            ) from None
        except FileNotFoundError:
            raise ReportError(f"{path}: no such events file") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ReportError(_not_ours(path, exc)) from exc
        except OSError as exc:
            raise ReportError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
        if camera_id is not None:
            events = [event for event in events if event.camera_id == camera_id]
        rows = bucket_counts(events, bucket)
    if start_s is None and end_s is None:
        return rows
    media = sum(1 for row in rows if row.clock is Clock.MEDIA)
    if media:
        logger.warning(
            "%s: %d rows of events without wall_time (media-time buckets) left out by --from/--to",
            path, media,
        )
    return [
        row for row in rows
        if row.clock is Clock.WALL
        and (start_s is None or row.bucket_start_s >= start_s)
        and (end_s is None or row.bucket_start_s < end_s)
    ]


def format_rows(rows: Sequence[CountRow], fmt: str) -> str:
    """The rows as text: ``"csv"`` (header :data:`REPORT_FIELDS`, an empty ``camera_id`` for
    none, ``\\n`` line ends) or ``"json"`` (an array of objects with the keys
    :data:`REPORT_FIELDS`, ``camera_id`` ``null`` for none). Ends with a newline.

    Raises:
        ReportError: unknown ``fmt``.
    """
    if fmt == "json":
        return json.dumps([row.as_dict() for row in rows], indent=2, ensure_ascii=False) + "\n"
    if fmt != "csv":
        raise ReportError(f"--format {fmt!r}: choose one of {', '.join(REPORT_FORMATS)}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REPORT_FIELDS)
    for row in rows:
        values = row.as_dict()
        writer.writerow(["" if values[k] is None else values[k] for k in REPORT_FIELDS])
    return out.getvalue()


# ------------------------------------------------------------------------------ CLI
def report_parser() -> Any:
    """The ``yolov7-track report`` argument parser (usage errors: one line, exit status 2)."""
    from app.cli import PROG, _OneLineArgumentParser

    parser = _OneLineArgumentParser(
        prog=f"{PROG} report",
        description="Count the events of an events file per time bucket, camera, line or zone, class "
        "and direction; print the table to stdout. Events with a wall_time go in UTC buckets "
        "(bucket_start ISO 8601, clock 'wall'); events without one in buckets of media time from "
        "the start of the video (bucket_start in seconds, clock 'media').",
    )
    parser.add_argument("events", type=Path, metavar="EVENTS",
                        help="events file written by yolov7-track: .sqlite/.sqlite3/.db, .csv or .jsonl/.ndjson")
    parser.add_argument("--bucket", default="15min", metavar="|".join(BUCKETS),
                        help="bucket length (default 15min)")
    parser.add_argument("--format", default="csv", metavar="csv|json", help="output format (default csv)")
    parser.add_argument("--camera", metavar="ID", help="only the events of this camera")
    parser.add_argument("--from", dest="start", metavar="ISO",
                        help="only buckets starting at or after this time, ISO 8601, UTC unless it has an "
                        "offset (e.g. 2026-12-06T13:00Z)")
    parser.add_argument("--to", dest="end", metavar="ISO", help="only buckets starting before this UTC time")
    return parser


def report_main(argv: list[str]) -> int:
    """Run ``yolov7-track report`` with ``argv`` (the arguments after ``report``); print the
    report to stdout; return the exit status (0).

    Raises:
        ReportError: see :func:`read_counts`, and a bad ``--bucket``, ``--format``, ``--camera``,
            ``--from`` or ``--to`` (one line naming the option).
        SystemExit: a usage error (status 2) or ``--help`` (status 0), from argparse.
    """
    from app.cli import EXIT_OK

    args = report_parser().parse_args(argv)
    bucket_seconds(args.bucket)  # the options first: their errors do not depend on the file
    if args.format not in REPORT_FORMATS:
        raise ReportError(f"--format {args.format!r}: choose one of {', '.join(REPORT_FORMATS)}")
    if args.camera is not None and not args.camera:
        raise ReportError("--camera: give a camera id (an empty one matches no event)")
    start_s = None if args.start is None else _parse_time(args.start, "--from")
    end_s = None if args.end is None else _parse_time(args.end, "--to")
    if start_s is not None and end_s is not None and start_s >= end_s:
        raise ReportError(f"--from {args.start} is not before --to {args.end}")
    rows = read_counts(args.events, args.bucket, camera_id=args.camera, start_s=start_s, end_s=end_s)
    sys.stdout.write(format_rows(rows, args.format))
    sys.stdout.flush()
    return EXIT_OK


# ------------------------------------------------------------------------------ helpers
def _sorted_rows(totals: dict[tuple[Clock, int, str | None, str, str, Direction], int]) -> list[CountRow]:
    rows = [CountRow(*key, count) for key, count in totals.items() if count]
    rows.sort(key=CountRow._sort_key)
    return rows


def _read_sqlite_counts(path: Path, bucket_s: int, camera_id: str | None) -> list[CountRow] | None:
    """Rows summed from the ``counts`` table of a SQLite events file; ``None`` when the file has
    an ``events`` table but no ``counts`` table (an earlier version: count its events instead).

    Raises:
        ReportError: not a SQLite database, or not one of ours.
    """
    from app.sinks import SQLITE_COUNTS_TABLE, SQLITE_TABLE

    try:
        # A plain connection, like read_events: it recovers the WAL of a writer that was killed.
        conn = sqlite3.connect(path)
        try:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if SQLITE_COUNTS_TABLE not in tables:
                if SQLITE_TABLE in tables:
                    return None
                raise ReportError(
                    f"{path}: no {SQLITE_TABLE!r} or {SQLITE_COUNTS_TABLE!r} table: not a yolov7-track "
                    "events database"
                )
            query = (f"SELECT clock, bucket_start_s, camera_id, zone, class_name, direction, count "
                     f"FROM {SQLITE_COUNTS_TABLE}")
            params: tuple[str, ...] = ()
            if camera_id is not None:
                query += " WHERE camera_id = ?"
                params = (camera_id,)
            records = conn.execute(query, params).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ReportError(_not_ours(path, exc)) from exc
    totals: dict[tuple[Clock, int, str | None, str, str, Direction], int] = {}
    try:
        for clock, start_s, camera, zone, class_name, direction, count in records:
            key = (Clock(clock), floor_bucket(int(start_s), bucket_s), camera or None, str(zone),
                   str(class_name), Direction(direction))
            totals[key] = totals.get(key, 0) + int(count)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{path}: malformed row in its {SQLITE_COUNTS_TABLE!r} table ({exc}): "
                          "not a yolov7-track events database") from exc
    return _sorted_rows(totals)


def _not_ours(path: Path, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    if detail.startswith(str(path)):
        detail = detail[len(str(path)):].lstrip(": ")
    return f"{path}: not a yolov7-track events file ({detail})"


def _parse_time(text: str, option: str) -> float:
    """UTC epoch seconds of an ISO 8601 date or date-time (``Z`` or an offset; UTC when none).

    Raises:
        ReportError: not ISO 8601 (names the option).
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"  # Python 3.10's fromisoformat does not take "Z"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ReportError(
            f"{option} {text!r}: not an ISO 8601 date or time (e.g. 2026-12-06 or 2026-12-06T13:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
