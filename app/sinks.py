"""Event sinks: count events written to CSV, JSONL or SQLite as they happen, crash-safe.

Pick one by file extension with :func:`open_event_sink` (``.csv``; ``.jsonl``/``.ndjson``;
``.sqlite``/``.sqlite3``/``.db``). Every sink is a context manager; the columns are
:data:`app.counting.EVENT_FIELDS` (``timestamp_s, frame_index, zone, track_id, class_name,
direction, dwell_s, camera_id, wall_time``). A SQLite database also keeps per-5-minute counts in
a ``counts`` table (see :class:`SqliteEventSink`).

Files of the previous version (no ``camera_id``/``wall_time``; the 7 columns of
:data:`app.counting.LEGACY_EVENT_FIELDS`) stay usable, and :func:`read_events` reads both
layouts:

- **CSV**: appending to a file whose header is the 7 legacy columns goes on in that layout, so
  that every row of the file keeps matching its header (spreadsheets and ``csv`` readers need
  that): the file stays valid, but the two new fields are not recorded in it. This is logged
  when the file is opened (INFO) and, once, as a WARNING when the first event that carries a
  ``camera_id`` or ``wall_time`` is written. To record them, start a new file (another name, or
  ``--events-mode overwrite``). A new or emptied file always gets the 9 columns.
- **JSONL**: every line is a self-describing object; new lines carry the two keys (``null``
  when unset) and old lines without them read as ``None``. Nothing to do.
- **SQLite**: our own ``events`` table without the two columns gets them (``ALTER TABLE ... ADD
  COLUMN``, NULL in the old rows) and the ``counts`` table is created and filled from the
  existing rows, in one transaction, when a sink opens the file in ``append`` or ``overwrite``
  mode. A version of yolov7-track that predates them refuses the upgraded file (it is "not
  ours" to it): upgrade every writer of a file together.

Existing files (:class:`EventsMode`, checked when the sink is opened; nothing is changed when
a file is refused):

- ``append`` (the default): existing events are kept and new ones added after them, once the
  file is known to be ours: a CSV must start with the header :data:`EVENT_FIELDS` (or the
  previous version's, above), the last complete line of a JSONL file must be an event, and a
  SQLite database may hold nothing but our ``events`` and ``counts`` tables (see
  :class:`SqliteEventSink`). An empty or missing file is started afresh. Anything else raises
  :class:`ForeignEventsFileError`, whose message says to choose another file or, for CSV/JSONL,
  ``--events-mode overwrite``.
- ``new``: the file must not exist or be empty, otherwise :class:`EventsFileExistsError`.
- ``overwrite``: a CSV/JSONL file is emptied whatever it holds; in a SQLite database the rows of
  our ``events`` and ``counts`` tables are deleted. A database that is not ours is refused even
  here: its tables are never dropped or altered.

A CSV/JSONL file that ends in the middle of a line (a writer killed mid-write) is repaired before
appending, so that a new event is never glued onto the fragment: a fragment that is a whole
event (or the CSV header) gets its missing newline; anything else, unreadable to
:func:`read_events` anyway, is cut off with a warning.

One writer per file: a sink holds an exclusive ``flock`` for its whole life, on the file itself
for CSV/JSONL and on a sidecar ``<name>.lock`` for SQLite (SQLite keeps POSIX locks on the
database file, which any other descriptor of that file closed by this process would release; the
sidecar is removed on close). A second sink on the same file, in this process or another, raises
:class:`EventsFileLockedError` instead of interleaving with the first.

Removed files (log rotation). Before each :meth:`EventSink.write_many` the sink checks (one
``stat``) that its path still names the open file. A CSV/JSONL file that was removed or renamed
away is recreated at the path (with the CSV header) after one warning, so later events land in a
file the user can see. A SQLite database that was removed or replaced is a failure
(:class:`EventsFileRemovedError`): a fresh database would silently split the events of one run
between two files that are no longer linked by their row ids, so the run's owner decides.

Durability (what a crash loses):

- **CSV, JSONL**: :meth:`EventSink.write` hands each event to the operating system at once
  (Python buffer flushed), so if the *process* dies (exception, ``SIGKILL``, out of memory) no
  written event is lost. A background thread calls ``fsync`` at most ``sync_interval_s`` after new
  data arrives, so an operating-system crash or power cut loses at most about the last
  ``sync_interval_s`` (0.5 s by default) of events. A process killed in the middle of a write can
  leave one incomplete last line; :func:`read_events` ignores it.
- **SQLite**: the database runs in WAL mode with ``synchronous=FULL``. Events are inserted into an
  open transaction that a background thread commits at most ``sync_interval_s`` after the first
  uncommitted insert, so any crash, of the process or of the machine, loses at most the last
  ``sync_interval_s`` of events (0.5 s by default, comfortably inside issue 4's one second). Batching
  keeps the cost per event to one ``INSERT`` instead of one transaction.

Failures. A sink that fails (a write, the background sync, a removed database) stays failed: it
records the error, every later ``write``/``write_many`` raises it again, and
:attr:`EventSink.failure` exposes it without raising, so a caller can poll the health of a sink
once per frame at the cost of an attribute read (the background thread records its error the
moment it happens). Every error is an :class:`EventSinkError` naming the file.

:meth:`EventSink.close` (also on leaving the ``with`` block) writes everything out (flush + fsync,
or commit + WAL checkpoint) and releases the lock. Leaving the block because of an exception still
closes the sink, and a failure to close is then logged instead of raised, so it never hides the
exception already in flight. A recorded failure is raised again by ``close``.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from app.buckets import COUNTS_BUCKET_S, event_bucket
from app.counting.events import EVENT_FIELDS, LEGACY_EVENT_FIELDS, CountEvent
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "EventSink",
    "EventSinkError",
    "EventsFileExistsError",
    "EventsFileLockedError",
    "EventsFileRemovedError",
    "EventsMode",
    "ForeignEventsFileError",
    "UnsupportedEventFileError",
    "CsvEventSink",
    "JsonlEventSink",
    "SqliteEventSink",
    "open_event_sink",
    "read_events",
    "DEFAULT_SYNC_INTERVAL_S",
    "SQLITE_TABLE",
    "SQLITE_COUNTS_TABLE",
]

logger = logging.getLogger(__name__)

#: Longest time an event waits before it is fsynced (CSV, JSONL) or committed (SQLite). Half of
#: issue 4's one-second budget, leaving room for thread scheduling and the fsync itself.
DEFAULT_SYNC_INTERVAL_S = 0.5
#: Name of the events table in SQLite files.
SQLITE_TABLE = "events"
#: Name of the per-bucket counts table in SQLite files (see :class:`SqliteEventSink`).
SQLITE_COUNTS_TABLE = "counts"
#: Columns of :data:`SQLITE_TABLE` as the previous version created it, with their declared types.
_LEGACY_SQLITE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "INTEGER"),
    ("timestamp_s", "REAL"),
    ("frame_index", "INTEGER"),
    ("zone", "TEXT"),
    ("track_id", "INTEGER"),
    ("class_name", "TEXT"),
    ("direction", "TEXT"),
    ("dwell_s", "REAL"),
)
#: Columns added at the end of :data:`SQLITE_TABLE` since then.
_ADDED_SQLITE_COLUMNS: tuple[tuple[str, str], ...] = (("camera_id", "TEXT"), ("wall_time", "TEXT"))
#: Columns of :data:`SQLITE_TABLE` with their declared types, in order.
_SQLITE_COLUMNS: tuple[tuple[str, str], ...] = _LEGACY_SQLITE_COLUMNS + _ADDED_SQLITE_COLUMNS
#: Columns of :data:`SQLITE_COUNTS_TABLE` with their declared types, in order.
_SQLITE_COUNTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("clock", "TEXT"),
    ("bucket_start_s", "INTEGER"),
    ("camera_id", "TEXT"),
    ("zone", "TEXT"),
    ("class_name", "TEXT"),
    ("direction", "TEXT"),
    ("count", "INTEGER"),
)
_COUNTS_KEY = "clock, bucket_start_s, camera_id, zone, class_name, direction"
_OUR_TABLES = (SQLITE_TABLE, SQLITE_COUNTS_TABLE)

_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")
#: How much of each end of an existing CSV/JSONL file is read to check it before appending.
_PROBE_BYTES = 1 << 16
#: What to do about an existing CSV/JSONL file that is not ours ("new" would refuse it too).
_CHOOSE = "choose another events file, or --events-mode overwrite to replace its content"


class EventSinkError(Yolov7TrackError, RuntimeError):
    """Writing events failed (disk full, file removed, database locked...)."""


class EventsFileLockedError(EventSinkError):
    """Another sink (another yolov7-track run, or this one) is writing the events file."""


class ForeignEventsFileError(EventSinkError):
    """The existing file holds something other than our events; it was left unchanged."""


class EventsFileExistsError(EventSinkError):
    """``mode="new"`` and the events file already holds data; it was left unchanged."""


class EventsFileRemovedError(EventSinkError):
    """The SQLite events database was removed or replaced while a sink was writing it."""


class UnsupportedEventFileError(Yolov7TrackError, ValueError):
    """The events file has an extension no sink handles."""


class EventsMode(str, Enum):
    """What a sink does with an events file that already exists (see the module docstring).

    A ``str`` enum: ``EventsMode("append") is EventsMode.APPEND``; the values are those of the
    command line's ``--events-mode``.
    """

    APPEND = "append"
    NEW = "new"
    OVERWRITE = "overwrite"

    @classmethod
    def parse(cls, value: "EventsMode | str") -> "EventsMode":
        """``value`` as an :class:`EventsMode`.

        Raises:
            ValueError: not one of ``"append"``, ``"new"``, ``"overwrite"`` (message lists them).
        """
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"events mode must be one of {allowed}, got {value!r}") from None


class EventSink(ABC):
    """Base of the sinks: thread-safe writes, periodic background sync, one writer per file,
    context manager.

    Args:
        path: the events file.
        mode: what to do with an existing file (:class:`EventsMode` or its string value).
        sync_interval_s: upper bound on how long written events stay unsynced (see module
            docstring), seconds, ``> 0``.

    Raises:
        ValueError: ``mode`` is not an :class:`EventsMode` value, or ``sync_interval_s`` is not
            positive.
        EventsFileLockedError: another sink holds the file.
        ForeignEventsFileError: the file holds something that is not our events (``append``,
            and ``overwrite`` of a SQLite database).
        EventsFileExistsError: ``mode="new"`` and the file holds data.
        EventSinkError: the file cannot be opened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        mode: EventsMode | str = EventsMode.APPEND,
        sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
    ) -> None:
        self.mode = EventsMode.parse(mode)
        if not sync_interval_s > 0:
            raise ValueError(f"sync_interval_s must be > 0, got {sync_interval_s}")
        self.path = Path(path)
        self.sync_interval_s = float(sync_interval_s)
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._failure: EventSinkError | None = None
        self._stop = threading.Event()
        self.events_written = 0
        self._events_unsynced = 0
        try:
            self._open(self.mode)
        except EventSinkError:
            raise
        except (OSError, sqlite3.Error) as exc:
            raise EventSinkError(f"cannot open events file {self.path}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._sync_loop, name=f"event-sink-sync:{self.path.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _open(self, mode: EventsMode) -> None:
        """Lock, check and open the file (called once, from the constructor); on error, leave
        nothing open or locked."""

    @abstractmethod
    def _before_write(self) -> None:
        """Check that the path still names the open file and react (lock held)."""

    @abstractmethod
    def _write_one(self, event: CountEvent) -> None:
        """Write one event so that it survives a crash of this process (lock held)."""

    @abstractmethod
    def _sync(self) -> None:
        """Make the written events durable (lock held)."""

    @abstractmethod
    def _close_file(self) -> None:
        """Sync, close and unlock (lock held)."""

    # -------------------------------------------------------------------- public
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def failure(self) -> EventSinkError | None:
        """The error that made this sink fail, or ``None`` while it is healthy.

        Reading it costs an attribute read (no system call): a background sync failure is
        recorded by the sync thread as it happens, so polling this once per frame notices it
        within a frame.
        """
        return self._failure

    def check(self) -> None:
        """Raise :attr:`failure` if the sink has failed; otherwise do nothing (no system call).

        Raises:
            EventSinkError: the sink has failed (a write, the background sync, a removed file).
        """
        failure = self._failure
        if failure is not None:
            raise failure.with_traceback(None)

    def write(self, event: CountEvent) -> None:
        """Write one event.

        Raises:
            EventSinkError: the sink is closed, this write failed, or the sink had failed earlier.
        """
        self.write_many((event,))

    def write_many(self, events: Iterable[CountEvent]) -> None:
        """Write events in order (see :meth:`write`). A CSV/JSONL file removed since the last
        write is first recreated, with a warning (see the module docstring).

        Raises:
            EventSinkError: the sink is closed, a write failed (the sink is failed from then on,
                :attr:`failure`), or the sink had failed earlier. A removed SQLite database
                raises :class:`EventsFileRemovedError`.
        """
        with self._lock:
            if self._closed:
                raise EventSinkError(f"{self.path}: write after close")
            self.check()
            try:
                self._before_write()
                for event in events:
                    self._write_one(event)
                    self.events_written += 1
                    self._events_unsynced += 1
                    self._dirty = True
            except EventSinkError as exc:
                self._failure = exc
                raise
            except (OSError, sqlite3.Error, ValueError) as exc:
                self._failure = EventSinkError(
                    f"cannot write events to {self.path}: {_describe(exc)}; "
                    "no further events are written to it"
                )
                raise self._failure from exc

    def close(self) -> None:
        """Stop the sync thread, make everything durable, close the file and release the lock.
        Idempotent.

        Raises:
            EventSinkError: the final sync failed, or the sink had failed earlier (the earlier
                error is raised again, after closing).
        """
        if self._closed:
            return
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._closed = True
            try:
                self._close_file()
            except (OSError, sqlite3.Error) as exc:
                if self._failure is not None:  # the same trouble, already recorded and logged
                    logger.debug("closing %s after its failure: %s", self.path, exc)
                else:
                    raise EventSinkError(
                        f"cannot finish events file {self.path}: {_describe(exc)}; "
                        f"up to {self._events_unsynced} events written since the last sync may be lost"
                    ) from exc
            self.check()
        logger.debug("closed %s after %d events", self.path, self.events_written)

    def __enter__(self) -> "EventSink":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # an exception is already in flight: log this one, let that one out
            logger.exception("closing %s after %s failed", self.path, exc_type.__name__)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("failed" if self._failure else "open")
        return f"{type(self).__name__}({str(self.path)!r}, {state}, events={self.events_written})"

    # ------------------------------------------------------------------ internal
    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_interval_s):
            with self._lock:
                if not self._dirty or self._failure is not None:
                    continue
                try:
                    self._sync()
                    self._dirty = False
                    self._events_unsynced = 0
                except (OSError, sqlite3.Error) as exc:
                    # Recorded for failure/check() and raised by the next write()/close().
                    failure = EventSinkError(
                        f"background sync of {self.path} failed: {_describe(exc)}; up to "
                        f"{self._events_unsynced} events written since the last sync may be lost, "
                        "and no further events are written to it"
                    )
                    failure.__cause__ = exc
                    self._failure = failure
                    logger.error("%s", failure)


# ------------------------------------------------------------------------------ locking
def _lock_fd(fd: int, path: Path) -> None:
    """Take an exclusive ``flock`` on ``fd`` without waiting.

    Raises:
        EventsFileLockedError: another open file description holds it.
        EventSinkError: the file system cannot lock.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise EventsFileLockedError(
            f"{path} is being written by another yolov7-track run (or another sink of this one): "
            "wait for it to finish, or choose another events file"
        ) from exc
    except OSError as exc:
        raise EventSinkError(
            f"cannot lock events file {path}: {_describe(exc)}; put the events file on a file "
            "system that supports flock (a local disk)"
        ) from exc


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _path_stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


# ------------------------------------------------------------------------------ text sinks
class _TextFileSink(EventSink):
    """Shared parts of the line-oriented text sinks (CSV, JSONL): open with lock and checks,
    rotation, fsync."""

    _newline: str | None = "\n"
    _file: io.TextIOWrapper
    _file_stat: os.stat_result

    # ------------------------------------------------------------ format hooks
    @abstractmethod
    def _check_ours(self, first_line: str | None, last_line: str | None) -> None:
        """Raise :class:`ForeignEventsFileError` unless an existing file with these first and
        last complete, non-empty lines (``None``: no such line) is ours."""

    @abstractmethod
    def _is_whole_line(self, fragment: str, first: bool) -> bool:
        """Whether a last line without its newline is a whole record (``first``: the file's
        only line)."""

    @abstractmethod
    def _start_writing(self, empty: bool) -> None:
        """Set up writing to ``self._file``; an ``empty`` file gets what a file of this format
        starts with (CSV: the header)."""

    # ------------------------------------------------------------ EventSink hooks
    def _open(self, mode: EventsMode) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: nothing may change before the lock is held and the content checked.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        try:
            _lock_fd(fd, self.path)
            size = os.fstat(fd).st_size
            if size:
                if mode is EventsMode.NEW:
                    raise EventsFileExistsError(
                        f"{self.path} already holds {size} bytes and the events mode is 'new': "
                        "choose another events file, or --events-mode append/overwrite"
                    )
                if mode is EventsMode.OVERWRITE:
                    logger.info("%s: overwriting %d bytes of earlier events", self.path, size)
                    os.ftruncate(fd, 0)
                else:
                    self._prepare_append(fd, size)
            self._file = open(  # noqa: SIM115 - closed in _close_file
                fd, "a", encoding="utf-8", newline=self._newline
            )
        except BaseException:
            os.close(fd)
            raise
        self._file_stat = os.fstat(fd)
        self._start_writing(self._file_stat.st_size == 0)

    def _before_write(self) -> None:
        current = _path_stat(self.path)
        if current is not None and _same_file(current, self._file_stat):
            return
        logger.warning(
            "events file %s was %s while this run was writing it (log rotation?); "
            "the events so far stay in the old file, the following ones go to a new %s",
            self.path, "removed" if current is None else "replaced", self.path,
        )
        try:
            self._sync()
        finally:
            self._file.close()  # also releases the lock on the old file
        self._open(EventsMode.APPEND)

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _close_file(self) -> None:
        if self._file.closed:  # a failed reopen after rotation left no file open
            return
        try:
            self._sync()
        finally:
            self._file.close()

    # ------------------------------------------------------------ helpers
    def _prepare_append(self, fd: int, size: int) -> None:
        """Check that the ``size``-byte file open at ``fd`` is ours and repair an incomplete last
        line (see the module docstring)."""
        head = os.pread(fd, min(size, _PROBE_BYTES), 0)
        tail_start = max(0, size - _PROBE_BYTES)
        tail = os.pread(fd, size - tail_start, tail_start)
        last_newline = tail.rfind(b"\n")
        if last_newline < 0 and tail_start > 0:
            raise ForeignEventsFileError(
                f"{self.path} has no line end in its last {_PROBE_BYTES} bytes, so it is not an "
                f"events file: {_CHOOSE}"
            )
        complete_end = tail_start + last_newline + 1  # bytes up to and including the last newline
        fragment = tail[last_newline + 1:]
        first_line: bytes | None = None
        last_line: bytes | None = None
        if complete_end > 0:
            if b"\n" not in head:
                raise ForeignEventsFileError(
                    f"{self.path}: its first line is longer than {_PROBE_BYTES} bytes, so it is "
                    f"not an events file: {_CHOOSE}"
                )
            first_line = head.split(b"\n", 1)[0]
            lines = tail[:last_newline].split(b"\n")
            if tail_start > 0:
                lines = lines[1:]  # the first piece may start mid-line
            last_line = next((line for line in reversed(lines) if line.strip()), None)
            if last_line is None and tail_start > 0:
                raise ForeignEventsFileError(f"{self.path} ends in {_PROBE_BYTES} bytes of blank lines: {_CHOOSE}")
        try:
            self._check_ours(
                None if first_line is None else first_line.decode("utf-8").rstrip("\r"),
                None if last_line is None else last_line.decode("utf-8").rstrip("\r"),
            )
        except UnicodeDecodeError as exc:
            raise ForeignEventsFileError(f"{self.path} is not UTF-8 text ({exc}): {_CHOOSE}") from exc
        if not fragment:
            return
        try:
            whole = self._is_whole_line(fragment.decode("utf-8"), first=complete_end == 0)
        except UnicodeDecodeError:
            whole = False
        if whole:
            logger.warning("%s: its last line had no line end (a run killed mid-write?); adding it", self.path)
            os.write(fd, b"\n")
        else:
            logger.warning(
                "%s ends with an incomplete line of %d bytes (a run killed mid-write?) that no "
                "reader can use; cutting it off before appending", self.path, len(fragment),
            )
            os.ftruncate(fd, complete_end)


class JsonlEventSink(_TextFileSink):
    """One JSON object per line, keys :data:`~app.counting.EVENT_FIELDS`, UTF-8.

    Appending requires the last complete, non-empty line of an existing file to be an event.
    """

    def _check_ours(self, first_line: str | None, last_line: str | None) -> None:
        if last_line is None:
            return
        try:
            CountEvent.from_dict(json.loads(last_line))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ForeignEventsFileError(
                f"cannot append to {self.path}: its last line is not a count event ({exc}); "
                f"it is not ours: {_CHOOSE}"
            ) from exc

    def _is_whole_line(self, fragment: str, first: bool) -> bool:
        try:
            CountEvent.from_dict(json.loads(fragment))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return False
        return True

    def _start_writing(self, empty: bool) -> None:
        pass

    def _write_one(self, event: CountEvent) -> None:
        line = json.dumps(event.as_dict(), ensure_ascii=False, allow_nan=False) + "\n"
        self._file.write(line)
        self._file.flush()  # to the OS now: survives a crash of this process


class CsvEventSink(_TextFileSink):
    """Comma-separated values with a header row :data:`~app.counting.EVENT_FIELDS`, UTF-8.

    ``dwell_s``, ``camera_id`` and ``wall_time`` are empty when unset. An existing file with the
    header of the previous version (:data:`~app.counting.LEGACY_EVENT_FIELDS`) is appended to in
    that layout, without ``camera_id`` and ``wall_time`` (see the module docstring). Appending to
    a file with any other header raises :class:`ForeignEventsFileError`.
    """

    _newline = ""  # the csv module writes its own line ends
    _writer: Any  # a csv.writer over self._file
    #: The columns of the open file: EVENT_FIELDS, or LEGACY_EVENT_FIELDS for an older file.
    columns: tuple[str, ...] = EVENT_FIELDS
    _warned_dropped = False

    def _check_ours(self, first_line: str | None, last_line: str | None) -> None:
        if first_line is None:
            return
        header = tuple(next(csv.reader([first_line]), []))
        if header not in (EVENT_FIELDS, LEGACY_EVENT_FIELDS):
            raise ForeignEventsFileError(
                f"cannot append to {self.path}: its header {list(header)} is not {list(EVENT_FIELDS)}; "
                f"it is not ours: {_CHOOSE}"
            )
        self._use_columns(header)

    def _is_whole_line(self, fragment: str, first: bool) -> bool:
        row = tuple(next(csv.reader([fragment]), []))
        if first:
            if row in (EVENT_FIELDS, LEGACY_EVENT_FIELDS):
                self._use_columns(row)
                return True
            return False
        try:
            CountEvent.from_dict(dict(zip(self.columns, row, strict=True)))
        except (KeyError, ValueError):
            return False
        return True

    def _use_columns(self, header: tuple[str, ...]) -> None:
        self.columns = header
        if header == LEGACY_EVENT_FIELDS:
            logger.info(
                "%s has the 7 columns of an earlier yolov7-track: appending in that layout, without "
                "camera_id and wall_time (a new events file gets them)", self.path,
            )

    def _start_writing(self, empty: bool) -> None:
        self._writer = csv.writer(self._file, lineterminator="\n")
        if empty:
            self.columns = EVENT_FIELDS
            self._writer.writerow(EVENT_FIELDS)
            self._file.flush()

    def _write_one(self, event: CountEvent) -> None:
        row = event.as_dict()
        if (not self._warned_dropped and self.columns != EVENT_FIELDS
                and (event.camera_id is not None or event.wall_time is not None)):
            self._warned_dropped = True
            logger.warning(
                "%s has the 7-column layout of an earlier yolov7-track: the events' camera_id and "
                "wall_time are not recorded in it; to keep them, write to a new events file (or "
                "use --events-mode overwrite)", self.path,
            )
        self._writer.writerow(["" if row[k] is None else row[k] for k in self.columns])
        self._file.flush()


# ------------------------------------------------------------------------------ SQLite
class SqliteEventSink(EventSink):
    """A SQLite database with two tables, :data:`SQLITE_TABLE` and :data:`SQLITE_COUNTS_TABLE`,
    in WAL mode.

    ``events``: ``id INTEGER PRIMARY KEY`` (write order) and :data:`~app.counting.EVENT_FIELDS`
    (``timestamp_s REAL``, ``frame_index INTEGER``, ``zone TEXT``, ``track_id INTEGER``,
    ``class_name TEXT``, ``direction TEXT``, ``dwell_s REAL`` or NULL, ``camera_id TEXT`` or
    NULL, ``wall_time TEXT`` or NULL). Readers may query the file while it is being written (WAL).

    ``counts``: how many events fell in each 5-minute bucket (:data:`app.buckets.COUNTS_BUCKET_S`)
    per camera, zone, class and direction: ``clock TEXT`` (``'wall'``: ``bucket_start_s`` is UTC
    epoch seconds from the events' ``wall_time``; ``'media'``: media seconds from
    ``timestamp_s``, for events without a wall time; see :mod:`app.buckets`), ``bucket_start_s
    INTEGER``, ``camera_id TEXT`` (``''`` for events without one: a primary key column cannot
    hold NULL usefully), ``zone TEXT``, ``class_name TEXT``, ``direction TEXT``, ``count
    INTEGER``; primary key the six columns before ``count``. Each event's row is added or
    incremented in the same transaction as the event itself, so both tables always agree after
    a commit (also after a crash). Coarser buckets (15 min, 1 h, 1 d) are sums of these rows
    (:mod:`app.report`).

    An existing database is written to only if it is empty or holds nothing but these two
    tables (and indexes or triggers on them), each with exactly these columns, or an ``events``
    table of the previous version (no ``camera_id``/``wall_time``, no ``counts``; upgraded on
    open, see the module docstring). A database with other tables belongs to another application:
    switching it to WAL mode (a lasting change of the file) and adding our tables to it would
    alter it behind its owner's back, so it is refused with :class:`ForeignEventsFileError` in
    every mode, as is an ``events`` or ``counts`` table with other columns. The lock is a sidecar
    ``<name>.lock`` (see the module docstring). A database removed or replaced while open makes
    the next write raise :class:`EventsFileRemovedError`.
    """

    _conn: sqlite3.Connection

    @property
    def lock_path(self) -> Path:
        """The sidecar file that carries the writer's lock."""
        return self.path.with_name(self.path.name + ".lock")

    def _open(self, mode: EventsMode) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._acquire_lock_file()
        try:
            self._open_database(mode)
        except BaseException:
            self._release_lock_file()
            raise
        self._db_stat = os.stat(self.path)
        self._insert = (
            f"INSERT INTO {SQLITE_TABLE} ({', '.join(EVENT_FIELDS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_FIELDS)})"
        )

    def _acquire_lock_file(self) -> int:
        """Open and lock the sidecar; retried if a closing sink removed it meanwhile."""
        for _ in range(3):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                _lock_fd(fd, self.path)
                current = _path_stat(self.lock_path)
            except BaseException:
                os.close(fd)
                raise
            if current is not None and _same_file(current, os.fstat(fd)):
                return fd
            os.close(fd)  # locked a sidecar that its previous owner removed: take the new one
        raise EventsFileLockedError(
            f"{self.path}: its lock file {self.lock_path} keeps being replaced; another "
            "yolov7-track run is starting and stopping on it: choose another events file"
        )

    def _release_lock_file(self) -> None:
        # Removed while still locked (and only if it is still ours), so a sink that opened it
        # meanwhile finds it gone once it gets the lock, and takes a new one.
        try:
            current = _path_stat(self.lock_path)
            if current is not None and _same_file(current, os.fstat(self._lock_fd)):
                os.unlink(self.lock_path)
        finally:
            os.close(self._lock_fd)

    def _open_database(self, mode: EventsMode) -> None:
        existing = _path_stat(self.path)
        if mode is EventsMode.NEW and existing is not None and existing.st_size > 0:
            raise EventsFileExistsError(
                f"{self.path} already exists ({existing.st_size} bytes) and the events mode is "
                "'new': choose another events file, or --events-mode append/overwrite"
            )
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
        # sync thread commits; every use is under self._lock.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            has_table, legacy, has_counts = self._check_ours(mode)
            mode_name = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode_name).lower() != "wal":
                raise EventSinkError(f"{self.path}: SQLite refused WAL mode (got {mode_name!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            # One transaction: the file is either upgraded (columns, counts) completely or not at all.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if has_table and mode is EventsMode.OVERWRITE:
                    count = self._conn.execute(f"SELECT COUNT(*) FROM {SQLITE_TABLE}").fetchone()[0]
                    logger.info("%s: overwriting %d earlier events", self.path, count)
                    self._conn.execute(f"DELETE FROM {SQLITE_TABLE}")
                    if has_counts:
                        self._conn.execute(f"DELETE FROM {SQLITE_COUNTS_TABLE}")
                self._conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} ("
                    "id INTEGER PRIMARY KEY, timestamp_s REAL NOT NULL, frame_index INTEGER NOT NULL, "
                    "zone TEXT NOT NULL, track_id INTEGER NOT NULL, class_name TEXT NOT NULL, "
                    "direction TEXT NOT NULL, dwell_s REAL, camera_id TEXT, wall_time TEXT)"
                )
                if legacy:
                    logger.info("%s: adding the columns camera_id and wall_time to the events "
                                "table of an earlier yolov7-track", self.path)
                    for name, declared in _ADDED_SQLITE_COLUMNS:
                        self._conn.execute(f"ALTER TABLE {SQLITE_TABLE} ADD COLUMN {name} {declared}")
                if not has_counts:
                    self._conn.execute(
                        f"CREATE TABLE {SQLITE_COUNTS_TABLE} ("
                        "clock TEXT NOT NULL, bucket_start_s INTEGER NOT NULL, camera_id TEXT NOT NULL, "
                        "zone TEXT NOT NULL, class_name TEXT NOT NULL, direction TEXT NOT NULL, "
                        f"count INTEGER NOT NULL, PRIMARY KEY ({_COUNTS_KEY}))"
                    )
                    if has_table:
                        self._fill_counts()
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite may have rolled back already (disk full)
                    self._conn.execute("ROLLBACK")
                raise
        except BaseException:
            self._conn.close()
            raise
        self._upsert_count = (
            f"INSERT INTO {SQLITE_COUNTS_TABLE} ({_COUNTS_KEY}, count) VALUES (?, ?, ?, ?, ?, ?, 1) "
            f"ON CONFLICT ({_COUNTS_KEY}) DO UPDATE SET count = count + 1"
        )

    def _fill_counts(self) -> None:
        """Fill the new ``counts`` table from the existing events (a file of an earlier version;
        inside the open transaction).

        Raises:
            EventSinkError: an existing row cannot be read as an event.
        """
        totals: dict[tuple[Any, ...], int] = {}
        rows = self._conn.execute(f"SELECT id, {', '.join(EVENT_FIELDS)} FROM {SQLITE_TABLE}")
        for row in rows:
            try:
                key = _counts_key(CountEvent.from_dict(dict(zip(EVENT_FIELDS, row[1:]))))
            except (KeyError, TypeError, ValueError) as exc:
                raise EventSinkError(
                    f"{self.path}: event row id {row[0]} cannot be read ({exc}); the counts table "
                    "cannot be built: choose another events file"
                ) from exc
            totals[key] = totals.get(key, 0) + 1
        self._conn.executemany(
            f"INSERT INTO {SQLITE_COUNTS_TABLE} ({_COUNTS_KEY}, count) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*key, count) for key, count in totals.items()],
        )
        if totals:
            logger.info("%s: built the counts table from %d earlier events", self.path, sum(totals.values()))

    def _check_ours(self, mode: EventsMode) -> tuple[bool, bool, bool]:
        """Refuse a database that is not ours (or any database, for ``new``); return whether
        our events table exists, whether it has the previous version's columns, and whether
        the counts table exists."""
        try:
            objects = self._conn.execute(
                "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ForeignEventsFileError(
                f"{self.path} is not a SQLite database ({exc}); it is not ours: {_CHOOSE}"
            ) from exc
        if mode is EventsMode.NEW and objects:
            raise EventsFileExistsError(
                f"{self.path} already holds tables and the events mode is 'new': choose another "
                "events file, or --events-mode append/overwrite"
            )
        foreign = sorted(
            f"{kind} {name!r}" for kind, name, table in objects
            if table not in _OUR_TABLES or (kind not in ("table", "index", "trigger"))
        )
        if foreign:
            raise ForeignEventsFileError(
                f"{self.path} holds {', '.join(foreign)}, which yolov7-track did not create; it "
                "is another application's database and is left unchanged: choose another events "
                "file (--events-mode overwrite does not change this)"
            )
        tables = {name for kind, name, _ in objects if kind == "table"}
        has_table = SQLITE_TABLE in tables
        has_counts = SQLITE_COUNTS_TABLE in tables
        legacy = False
        if has_table:
            columns = self._columns(SQLITE_TABLE)
            legacy = columns == _LEGACY_SQLITE_COLUMNS and not has_counts
            if columns != _SQLITE_COLUMNS and not legacy:
                raise self._other_columns(SQLITE_TABLE, columns)
        if has_counts:
            columns = self._columns(SQLITE_COUNTS_TABLE)
            if columns != _SQLITE_COUNTS_COLUMNS or not has_table:
                raise self._other_columns(SQLITE_COUNTS_TABLE, columns)
        return has_table, legacy, has_counts

    def _columns(self, table: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (row[1], str(row[2]).upper()) for row in self._conn.execute(f"PRAGMA table_info({table})")
        )

    def _other_columns(self, table: str, columns: tuple[tuple[str, str], ...]) -> ForeignEventsFileError:
        return ForeignEventsFileError(
            f"{self.path} holds a table {table!r} with other columns "
            f"({', '.join(f'{n} {t}' for n, t in columns)}); it is not ours and is left "
            "unchanged: choose another events file (--events-mode overwrite does not "
            "change this)"
        )

    def _before_write(self) -> None:
        current = _path_stat(self.path)
        if current is not None and _same_file(current, self._db_stat):
            return
        raise EventsFileRemovedError(
            f"events database {self.path} was {'removed' if current is None else 'replaced'} "
            "while this run was writing it; no further events are written (a SQLite database "
            "cannot be rotated while open: stop the run first, or use a CSV/JSONL events file)"
        )

    def _write_one(self, event: CountEvent) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        row = event.as_dict()
        key = _counts_key(event)  # before the INSERT: a bad event leaves both tables untouched
        self._conn.execute(self._insert, [row[k] for k in EVENT_FIELDS])
        # The same open transaction: committed (or lost in a crash) together with the event row.
        self._conn.execute(self._upsert_count, key)

    def _sync(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def _close_file(self) -> None:
        try:
            try:
                self._sync()
                # Move the WAL into the main file so the database is one self-contained file.
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()
        finally:
            self._release_lock_file()


def _counts_key(event: CountEvent) -> tuple[str, int, str, str, str, str]:
    """The ``counts`` row an event adds to: (clock, bucket_start_s, camera_id or '', zone,
    class_name, direction)."""
    clock, start_s = event_bucket(event, COUNTS_BUCKET_S)
    return (clock.value, start_s, event.camera_id or "", event.zone, event.class_name,
            event.direction.value)


def open_event_sink(
    path: str | Path,
    *,
    mode: EventsMode | str = EventsMode.APPEND,
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S,
) -> EventSink:
    """Open the sink that matches the file extension (case-insensitive).

    Args:
        path: the events file.
        mode: ``"append"`` (default), ``"new"`` or ``"overwrite"``: what to do with an existing
            file (see :class:`EventsMode` and the module docstring).
        sync_interval_s: see :class:`EventSink`.

    Raises:
        ValueError: ``mode`` is not one of ``"append"``, ``"new"``, ``"overwrite"``, or
            ``sync_interval_s`` is not positive.
        UnsupportedEventFileError: the extension is not one of ``.csv``, ``.jsonl``,
            ``.ndjson``, ``.sqlite``, ``.sqlite3``, ``.db``.
        EventsFileLockedError: another sink (another run) is writing the file.
        ForeignEventsFileError: the file is not ours (see the module docstring).
        EventsFileExistsError: ``mode="new"`` and the file holds data.
        EventSinkError: the file cannot be opened.
    """
    mode = EventsMode.parse(mode)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        sink_type: type[EventSink] = CsvEventSink
    elif suffix in _JSONL_SUFFIXES:
        sink_type = JsonlEventSink
    elif suffix in _SQLITE_SUFFIXES:
        sink_type = SqliteEventSink
    else:
        supported = ", ".join(_CSV_SUFFIXES + _JSONL_SUFFIXES + _SQLITE_SUFFIXES)
        raise UnsupportedEventFileError(
            f"events file {path}: unsupported extension {path.suffix!r}; use one of {supported}"
        )
    return sink_type(path, mode=mode, sync_interval_s=sync_interval_s)


def read_events(path: str | Path) -> list[CountEvent]:
    """Read back the events of a file written by any sink, in write order.

    An incomplete last line of a CSV/JSONL file (a process killed mid-write) is skipped with a
    warning; any other malformed line raises ``ValueError`` naming the file and line.

    Both layouts are read: the current one (:data:`~app.counting.EVENT_FIELDS`) and the
    previous version's (:data:`~app.counting.LEGACY_EVENT_FIELDS`: a CSV header of 7 columns, JSONL
    objects without ``camera_id``/``wall_time``, a SQLite ``events`` table without those
    columns), whose events get ``camera_id=None, wall_time=None``.

    Raises:
        UnsupportedEventFileError: unknown extension.
        FileNotFoundError: no such file.
        ValueError: malformed content, or a SQLite file that is not an events database (the
            message names the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"no events file at {path}")
    if suffix in _SQLITE_SUFFIXES:
        return _read_sqlite_events(path)
    if suffix not in _CSV_SUFFIXES + _JSONL_SUFFIXES:
        raise UnsupportedEventFileError(f"events file {path}: unsupported extension {path.suffix!r}")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete, tail = lines[:-1], lines[-1]  # tail: text after the last newline
    if tail:
        logger.warning("%s: ignoring an incomplete last line (%d characters)", path, len(tail))
    if suffix in _JSONL_SUFFIXES:
        return [_parse_jsonl_line(line, path, i + 1) for i, line in enumerate(complete) if line]
    reader = csv.reader(complete)
    header = next(reader, None)
    if header is None:
        return []
    columns = tuple(header)
    if columns not in (EVENT_FIELDS, LEGACY_EVENT_FIELDS):
        raise ValueError(f"{path}: header {header} is not {list(EVENT_FIELDS)}")
    events = []
    for number, row in enumerate(reader, start=2):
        try:
            events.append(CountEvent.from_dict(dict(zip(columns, row, strict=True))))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: malformed event row {row}: {exc}") from exc
    return events


def _read_sqlite_events(path: Path) -> list[CountEvent]:
    """The events of a SQLite file, current or previous layout (see :func:`read_events`)."""
    # A plain connection (not read-only) so that a WAL left by a killed writer is recovered.
    conn = sqlite3.connect(path)
    try:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({SQLITE_TABLE})")}
        if not present:
            raise ValueError(f"{path}: no {SQLITE_TABLE!r} table: not a yolov7-track events database")
        if not set(LEGACY_EVENT_FIELDS) <= present:
            raise ValueError(
                f"{path}: its {SQLITE_TABLE!r} table has other columns ({', '.join(sorted(present))}): "
                "not a yolov7-track events database"
            )
        fields = [name for name in EVENT_FIELDS if name in present]
        rows = conn.execute(f"SELECT {', '.join(fields)} FROM {SQLITE_TABLE} ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path}: cannot read it as a yolov7-track events database: {exc}") from exc
    finally:
        conn.close()
    events = []
    for number, row in enumerate(rows, start=1):
        try:
            events.append(CountEvent.from_dict(dict(zip(fields, row))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed event row {number} {row}: {exc}") from exc
    return events


def _parse_jsonl_line(line: str, path: Path, number: int) -> CountEvent:
    try:
        return CountEvent.from_dict(json.loads(line))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{number}: malformed event line: {exc}") from exc


def _describe(exc: BaseException) -> str:
    """``exc`` for a message, with a hint for the errors that have an obvious remedy."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"{text} (the disk is full: free space on it)"
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
        return f"{text} (the disk is full: free space on it)"
    return text
