"""Event sinks: count events written to CSV, JSONL or SQLite as they happen, crash-safe.

Pick one by file extension with :func:`open_event_sink` (``.csv``; ``.jsonl``/``.ndjson``;
``.sqlite``/``.sqlite3``/``.db``). Every sink is a context manager; the columns are
:data:`app.counting.EVENT_FIELDS` (``timestamp_s, frame_index, zone, track_id, class_name,
direction, dwell_s``).

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

:meth:`EventSink.close` (also on leaving the ``with`` block) writes everything out (flush + fsync,
or commit + WAL checkpoint). Leaving the block because of an exception still closes the sink, and
a failure to close is then logged instead of raised, so it never hides the exception already in
flight. An error in the background thread is re-raised, as :class:`EventSinkError`, by the next
``write`` or ``close``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from app.counting.events import EVENT_FIELDS, CountEvent

__all__ = [
    "EventSink",
    "EventSinkError",
    "UnsupportedEventFileError",
    "CsvEventSink",
    "JsonlEventSink",
    "SqliteEventSink",
    "open_event_sink",
    "read_events",
    "DEFAULT_SYNC_INTERVAL_S",
    "SQLITE_TABLE",
]

logger = logging.getLogger(__name__)

#: Longest time an event waits before it is fsynced (CSV, JSONL) or committed (SQLite). Half of
#: issue 4's one-second budget, leaving room for thread scheduling and the fsync itself.
DEFAULT_SYNC_INTERVAL_S = 0.5
#: Name of the events table in SQLite files.
SQLITE_TABLE = "events"

_CSV_SUFFIXES = (".csv",)
_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")


class EventSinkError(RuntimeError):
    """Writing events failed (disk full, file removed, database locked...)."""


class UnsupportedEventFileError(ValueError):
    """The events file has an extension no sink handles."""


class EventSink(ABC):
    """Base of the sinks: thread-safe writes, periodic background sync, context manager.

    Args:
        path: the events file.
        append: keep existing events and add to them; otherwise the file starts empty.
        sync_interval_s: upper bound on how long written events stay unsynced (see module
            docstring), seconds, ``> 0``.

    Raises:
        ValueError: ``sync_interval_s`` is not positive.
        EventSinkError: the file cannot be opened.
    """

    def __init__(
        self, path: str | Path, *, append: bool = False, sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    ) -> None:
        if not sync_interval_s > 0:
            raise ValueError(f"sync_interval_s must be > 0, got {sync_interval_s}")
        self.path = Path(path)
        self.sync_interval_s = float(sync_interval_s)
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._background_error: BaseException | None = None
        self._stop = threading.Event()
        self.events_written = 0
        try:
            self._open(append)
        except (OSError, sqlite3.Error) as exc:
            raise EventSinkError(f"cannot open events file {self.path}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._sync_loop, name=f"event-sink-sync:{self.path.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _open(self, append: bool) -> None:
        """Open the file (called once, from the constructor)."""

    @abstractmethod
    def _write_one(self, event: CountEvent) -> None:
        """Write one event so that it survives a crash of this process (lock held)."""

    @abstractmethod
    def _sync(self) -> None:
        """Make the written events durable (lock held)."""

    @abstractmethod
    def _close_file(self) -> None:
        """Sync and close (lock held)."""

    # -------------------------------------------------------------------- public
    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, event: CountEvent) -> None:
        """Write one event.

        Raises:
            EventSinkError: the sink is closed, the write failed, or the background sync failed
                earlier.
        """
        self.write_many((event,))

    def write_many(self, events: Iterable[CountEvent]) -> None:
        """Write events in order (see :meth:`write`)."""
        with self._lock:
            self._raise_if_unusable()
            try:
                for event in events:
                    self._write_one(event)
                    self.events_written += 1
                    self._dirty = True
            except (OSError, sqlite3.Error, ValueError) as exc:
                raise EventSinkError(f"cannot write events to {self.path}: {exc}") from exc

    def close(self) -> None:
        """Stop the sync thread, make everything durable and close the file. Idempotent.

        Raises:
            EventSinkError: the final sync failed, or the background sync had failed.
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
                raise EventSinkError(f"cannot finish events file {self.path}: {exc}") from exc
            if self._background_error is not None:
                raise EventSinkError(
                    f"background sync of {self.path} failed: {self._background_error}"
                ) from self._background_error
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
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}({str(self.path)!r}, {state}, events={self.events_written})"

    # ------------------------------------------------------------------ internal
    def _raise_if_unusable(self) -> None:
        if self._closed:
            raise EventSinkError(f"{self.path}: write after close")
        if self._background_error is not None:
            raise EventSinkError(
                f"background sync of {self.path} failed: {self._background_error}"
            ) from self._background_error

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_interval_s):
            with self._lock:
                if not self._dirty or self._background_error is not None:
                    continue
                try:
                    self._sync()
                    self._dirty = False
                except (OSError, sqlite3.Error) as exc:
                    # Kept and re-raised by the next write()/close() in the caller's thread.
                    logger.error("background sync of %s failed: %s", self.path, exc)
                    self._background_error = exc


class _TextFileSink(EventSink):
    """Shared parts of the line-oriented text sinks (CSV, JSONL)."""

    _newline: str | None = "\n"
    _file: io.TextIOWrapper

    def _open_text(self, append: bool) -> bool:
        """Open the file; return True if it already holds data (append mode only)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        has_data = append and self.path.exists() and self.path.stat().st_size > 0
        self._file = open(  # noqa: SIM115 - closed in _close_file
            self.path, "a" if append else "w", encoding="utf-8", newline=self._newline
        )
        return has_data

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def _close_file(self) -> None:
        try:
            self._sync()
        finally:
            self._file.close()


class JsonlEventSink(_TextFileSink):
    """One JSON object per line, keys :data:`~app.counting.EVENT_FIELDS`, UTF-8."""

    def _open(self, append: bool) -> None:
        self._open_text(append)

    def _write_one(self, event: CountEvent) -> None:
        line = json.dumps(event.as_dict(), ensure_ascii=False, allow_nan=False) + "\n"
        self._file.write(line)
        self._file.flush()  # to the OS now: survives a crash of this process


class CsvEventSink(_TextFileSink):
    """Comma-separated values with a header row :data:`~app.counting.EVENT_FIELDS`, UTF-8.

    ``dwell_s`` is empty for events without a dwell time. Appending to a file whose header
    differs raises :class:`EventSinkError`.
    """

    _newline = ""  # the csv module writes its own line ends

    def _open(self, append: bool) -> None:
        if self._open_text(append):
            with open(self.path, encoding="utf-8", newline="") as existing:
                header = next(csv.reader(existing), [])
            if tuple(header) != EVENT_FIELDS:
                self._file.close()
                raise EventSinkError(
                    f"cannot append to {self.path}: its header {header} is not {list(EVENT_FIELDS)}"
                )
            self._writer = csv.writer(self._file, lineterminator="\n")
        else:
            self._writer = csv.writer(self._file, lineterminator="\n")
            self._writer.writerow(EVENT_FIELDS)
            self._file.flush()

    def _write_one(self, event: CountEvent) -> None:
        row = event.as_dict()
        self._writer.writerow(["" if row[k] is None else row[k] for k in EVENT_FIELDS])
        self._file.flush()


class SqliteEventSink(EventSink):
    """A SQLite database with one table, :data:`SQLITE_TABLE`, in WAL mode.

    Columns: ``id INTEGER PRIMARY KEY`` (write order) and :data:`~app.counting.EVENT_FIELDS`
    (``timestamp_s REAL``, ``frame_index INTEGER``, ``zone TEXT``, ``track_id INTEGER``,
    ``class_name TEXT``, ``direction TEXT``, ``dwell_s REAL`` or NULL). Readers may query the
    file while it is being written (WAL).
    """

    _conn: sqlite3.Connection

    def _open(self, append: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: the
        # sync thread commits; every use is under self._lock.
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise EventSinkError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=FULL")
            if not append:
                self._conn.execute(f"DROP TABLE IF EXISTS {SQLITE_TABLE}")
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SQLITE_TABLE} ("
                "id INTEGER PRIMARY KEY, timestamp_s REAL NOT NULL, frame_index INTEGER NOT NULL, "
                "zone TEXT NOT NULL, track_id INTEGER NOT NULL, class_name TEXT NOT NULL, "
                "direction TEXT NOT NULL, dwell_s REAL)"
            )
        except BaseException:
            self._conn.close()
            raise
        self._insert = (
            f"INSERT INTO {SQLITE_TABLE} ({', '.join(EVENT_FIELDS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_FIELDS)})"
        )

    def _write_one(self, event: CountEvent) -> None:
        if not self._conn.in_transaction:
            self._conn.execute("BEGIN")
        row = event.as_dict()
        self._conn.execute(self._insert, [row[k] for k in EVENT_FIELDS])

    def _sync(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("COMMIT")

    def _close_file(self) -> None:
        try:
            self._sync()
            # Move the WAL into the main file so the database is one self-contained file.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()


def open_event_sink(
    path: str | Path, *, append: bool = False, sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
) -> EventSink:
    """Open the sink that matches the file extension (case-insensitive).

    Raises:
        UnsupportedEventFileError: the extension is not one of ``.csv``, ``.jsonl``,
            ``.ndjson``, ``.sqlite``, ``.sqlite3``, ``.db``.
        EventSinkError: the file cannot be opened.
    """
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
    return sink_type(path, append=append, sync_interval_s=sync_interval_s)


def read_events(path: str | Path) -> list[CountEvent]:
    """Read back the events of a file written by any sink, in write order.

    An incomplete last line of a CSV/JSONL file (a process killed mid-write) is skipped with a
    warning; any other malformed line raises ``ValueError`` naming the file and line.

    Raises:
        UnsupportedEventFileError: unknown extension.
        FileNotFoundError: no such file.
        ValueError: malformed content.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"no events file at {path}")
    if suffix in _SQLITE_SUFFIXES:
        # A plain connection (not read-only) so that a WAL left by a killed writer is recovered.
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute(
                f"SELECT {', '.join(EVENT_FIELDS)} FROM {SQLITE_TABLE} ORDER BY id"
            ).fetchall()
        finally:
            conn.close()
        return [CountEvent.from_dict(dict(zip(EVENT_FIELDS, row))) for row in rows]
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
    if tuple(header) != EVENT_FIELDS:
        raise ValueError(f"{path}: header {header} is not {list(EVENT_FIELDS)}")
    events = []
    for number, row in enumerate(reader, start=2):
        try:
            events.append(CountEvent.from_dict(dict(zip(EVENT_FIELDS, row, strict=True))))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: malformed event row {row}: {exc}") from exc
    return events


def _parse_jsonl_line(line: str, path: Path, number: int) -> CountEvent:
    try:
        return CountEvent.from_dict(json.loads(line))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{number}: malformed event line: {exc}") from exc
