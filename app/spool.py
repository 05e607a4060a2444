"""A durable first-in first-out queue on disk, for outputs that deliver events to other systems.

An output (MQTT, webhook) appends each event to its :class:`Spool` before anything else, and a
delivery thread removes it (:meth:`Spool.ack`) only once the other system has confirmed it. So an
event that was appended survives a broker or endpoint that is down, a crash or ``kill -9`` of
this process, and a power cut: after a restart, every appended and not yet acknowledged item is
there again, in the order it was appended.

Storage: one SQLite database per output (``<spool_dir>/<name>.sqlite``, see
:func:`spool_path`) in WAL mode with ``synchronous=FULL``; each :meth:`Spool.append` is one
committed transaction, so it is on disk when the call returns. Rows get increasing ids
(``AUTOINCREMENT``: an id is never reused, even after every row was acknowledged), and the
order of the ids is the order of the ``append`` calls.

Ownership. The database carries our SQLite ``application_id`` (:data:`SPOOL_APPLICATION_ID`)
and a format version in ``user_version``. An empty or missing file becomes a new spool; any
other file is refused with :class:`ForeignSpoolError` (another database, a file that is not a
database at all) and is never changed. A spool that is ours but damaged raises
:class:`CorruptSpoolError` when opened; move it away to start a new one.

One user per file: a :class:`Spool` holds an exclusive ``flock`` on the sidecar
``<path>.lock`` for its whole life, so a second :class:`Spool` on the same file, in this process
or another, raises :class:`SpoolLockedError` instead of delivering the same items twice. (A
sidecar, not the database itself: SQLite keeps POSIX locks on the database, which closing any
other descriptor of that file in this process would release.) The sidecar is left in place on
close; it is empty.

Thread-safety: every method may be called from any thread; one lock serializes them.

The module also holds what every output shares: the error classes (:class:`OutputError` and its
subclasses), :func:`check_camera_id` and :func:`event_json` (the JSON body of an event).
"""

from __future__ import annotations

import datetime
import enum
import errno
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "wait_until",
    "OutputError",
    "OutputConfigError",
    "OutputClosedError",
    "InvalidEventError",
    "SpoolError",
    "SpoolOpenError",
    "SpoolLockedError",
    "ForeignSpoolError",
    "CorruptSpoolError",
    "Spool",
    "SpoolItem",
    "SPOOL_APPLICATION_ID",
    "SPOOL_FORMAT_VERSION",
    "spool_path",
    "check_camera_id",
    "event_json",
    "encode_json",
]

logger = logging.getLogger(__name__)

# "y7sp" in ASCII: SQLite's header field for the application that owns the file.
SPOOL_APPLICATION_ID = 0x79377370
SPOOL_FORMAT_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 5.0


class OutputError(Yolov7TrackError, RuntimeError):
    """An output that sends events to another system (spool, MQTT, webhook) failed."""


class OutputConfigError(OutputError, ValueError):
    """An output's settings are invalid; the message names the setting and the bad value."""


class OutputClosedError(OutputError):
    """The spool or output was used after ``close()``."""


class InvalidEventError(OutputError, ValueError):
    """An event, counts dict or camera id cannot be sent (not JSON-serializable, bad id)."""


class SpoolError(OutputError):
    """A spool file cannot be used; the message names the file."""


class SpoolOpenError(SpoolError):
    """The spool file or its folder cannot be created or opened (permissions, full disk...)."""


class SpoolLockedError(SpoolError):
    """Another :class:`Spool`, in this process or another, has the file open."""


class ForeignSpoolError(SpoolError):
    """The file exists but is not a spool (another SQLite database, or not a database at all)."""


class CorruptSpoolError(SpoolError):
    """The file is a spool but damaged, or was written by a newer version of yolov7-track."""


class SpoolItem(NamedTuple):
    """One queued item: ``id`` (increasing, never reused), ``key`` and ``payload`` (bytes)."""

    id: int
    key: str
    payload: bytes


def spool_path(spool_dir: str | os.PathLike[str], name: str) -> Path:
    """The spool file of the output called ``name``: ``<spool_dir>/<name>.sqlite``.

    Raises:
        OutputConfigError: ``name`` is empty, contains a path separator or starts with a dot.
    """
    if not name or "/" in name or os.sep in name or name.startswith(".") or "\x00" in name:
        raise OutputConfigError(
            f"spool name must be a plain file name (no '/', not starting with '.'), got {name!r}"
        )
    return Path(spool_dir) / f"{name}.sqlite"


def check_camera_id(camera_id: str) -> str:
    """Return ``camera_id`` if it can be one level of an MQTT topic and a JSON value.

    Raises:
        InvalidEventError: not a non-empty string, or contains ``/``, ``+``, ``#`` or NUL.
    """
    if not isinstance(camera_id, str) or not camera_id:
        raise InvalidEventError(f"camera_id must be a non-empty string, got {camera_id!r}")
    bad = [char for char in "/+#\x00" if char in camera_id]
    if bad:
        raise InvalidEventError(
            f"camera_id {camera_id!r} contains {bad[0]!r}; use letters, digits, '-', '_' or '.'"
        )
    return camera_id


def _json_default(value: Any) -> Any:
    """Values ``json`` does not know: enums (their value), NumPy scalars and arrays, datetimes."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # NumPy scalar or array
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any, what: str) -> bytes:
    """Compact UTF-8 JSON of ``value``; ``what`` names it in the error.

    Raises:
        InvalidEventError: a value is not serializable, or is NaN or infinite.
    """
    try:
        text = json.dumps(value, default=_json_default, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise InvalidEventError(f"{what} cannot be sent as JSON: {error}") from error
    return text.encode("utf-8")


def event_json(camera_id: str, event: Mapping[str, Any]) -> bytes:
    """The JSON body every output sends for one event: ``{"camera_id": ..., **event}``.

    ``camera_id`` comes first. An event's own ``camera_id`` key may be absent, ``None`` or the
    same id; the argument is written either way.

    Raises:
        InvalidEventError: bad ``camera_id``, an event that is not a mapping, an event whose
            ``camera_id`` differs from the argument, or a value that is not JSON (NaN included).
    """
    check_camera_id(camera_id)
    if not isinstance(event, Mapping):
        raise InvalidEventError(f"event must be a mapping (dict), got {type(event).__name__}")
    own = event.get("camera_id")
    if own is not None and own != camera_id:
        raise InvalidEventError(
            f"event has camera_id {own!r} but is sent for camera {camera_id!r}"
        )
    body = {"camera_id": camera_id}
    body.update((str(key), value) for key, value in event.items() if key != "camera_id")
    return encode_json(body, f"event for camera {camera_id!r}")


class Spool:
    """A durable FIFO of ``(key, payload)`` items in one SQLite file (see the module docstring).

    Args:
        path: the database file; missing folders are created.

    Raises:
        SpoolOpenError: the file or its folder cannot be created or opened.
        SpoolLockedError: another :class:`Spool` has the file open.
        ForeignSpoolError: the file is not a spool.
        CorruptSpoolError: the file is a damaged spool or from a newer version.

    Usage::

        with Spool(spool_path("/var/spool/yolov7-track", "mqtt")) as spool:
            spool.append(b'{"zone": "road"}', key="cam1")
            for item in spool.peek(10):
                deliver(item.payload)
                spool.ack(item.id)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._lock_fd = self._acquire_file_lock()
        try:
            self._connection = self._open_database()
            self._count = int(self._connection.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
        except BaseException:
            os.close(self._lock_fd)
            raise
        if self._count:
            logger.info("spool %s: %d undelivered item(s) from an earlier run", self.path,
                        self._count)

    # -- opening --------------------------------------------------------------------------

    def _acquire_file_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise SpoolOpenError(
                f"cannot open spool {self.path}: {error.strerror or error} "
                f"(check that the folder exists and is writable)"
            ) from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SpoolLockedError(
                    f"spool {self.path} is in use by another output (lock {lock_path}); "
                    f"give each output its own spool name or folder"
                ) from error
            raise SpoolOpenError(f"cannot lock spool {self.path}: {error}") from error
        return fd

    def _open_database(self) -> sqlite3.Connection:
        try:
            with open(self.path, "rb") as file:
                header = file.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            header = b""
        except OSError as error:
            raise SpoolOpenError(f"cannot read spool {self.path}: {error.strerror}") from error
        if header and header != _SQLITE_MAGIC:
            raise ForeignSpoolError(
                f"{self.path} is not a spool (not an SQLite database); "
                f"move it away or choose another spool folder"
            )
        try:
            connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise SpoolOpenError(f"cannot open spool {self.path}: {error}") from error
        try:
            self._check_or_create(connection)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        except SpoolError:
            connection.close()
            raise
        except sqlite3.DatabaseError as error:
            connection.close()
            message = str(error)
            if "malformed" in message or "corrupt" in message or "not a database" in message:
                raise CorruptSpoolError(
                    f"spool {self.path} is damaged ({message}); move it away to start a new one"
                ) from error
            raise SpoolOpenError(f"cannot open spool {self.path}: {message}") from error
        return connection

    def _check_or_create(self, connection: sqlite3.Connection) -> None:
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application_id == 0 and not tables:
            connection.executescript(
                "BEGIN;"
                f"PRAGMA application_id = {SPOOL_APPLICATION_ID};"
                f"PRAGMA user_version = {SPOOL_FORMAT_VERSION};"
                "CREATE TABLE spool (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " key TEXT NOT NULL, payload BLOB NOT NULL);"
                "COMMIT;"
            )
            return
        if application_id != SPOOL_APPLICATION_ID:
            raise ForeignSpoolError(
                f"{self.path} is an SQLite database but not a spool (tables: "
                f"{', '.join(sorted(tables)) or 'none'}); it was left unchanged: "
                f"choose another spool folder or name"
            )
        if version > SPOOL_FORMAT_VERSION:
            raise CorruptSpoolError(
                f"spool {self.path} has format version {version}, newer than this version of "
                f"yolov7-track reads ({SPOOL_FORMAT_VERSION}); upgrade, or move the file away"
            )
        if "spool" not in tables:
            raise CorruptSpoolError(f"spool {self.path} has no 'spool' table; move it away")
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptSpoolError(
                f"spool {self.path} is damaged ({'; '.join(problems[:3])}); "
                f"move it away to start a new one"
            )

    # -- queue operations -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise OutputClosedError(f"spool {self.path} is closed")

    def _write(self, sql: str, parameters: Iterable[object] | Iterable[Iterable[object]],
               many: bool = False) -> sqlite3.Cursor:
        """Run one statement in its own committed transaction; map errors to SpoolError."""
        try:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                if many:
                    cursor = self._connection.executemany(sql, parameters)  # type: ignore[arg-type]
                else:
                    cursor = self._connection.execute(sql, parameters)  # type: ignore[arg-type]
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise SpoolError(f"cannot write spool {self.path}: {error}") from error
        return cursor

    def append(self, payload: bytes | str, key: str = "") -> int:
        """Add one item at the end; it is committed to disk when this returns.

        Args:
            payload: the item; a ``str`` is stored as its UTF-8 bytes.
            key: a short label kept with the item (a topic, an idempotency key...).

        Returns:
            The item's id, larger than every id appended before.

        Raises:
            OutputClosedError: the spool is closed.
            SpoolError: the write failed (full disk, removed folder...); nothing was added.
        """
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        with self._lock:
            self._check_open()
            cursor = self._write("INSERT INTO spool (key, payload) VALUES (?, ?)",
                                 (str(key), data))
            self._count += 1
            self._changed.notify_all()
            return int(cursor.lastrowid)

    def peek(self, n: int = 1, after_id: int = 0) -> list[SpoolItem]:
        """The first ``n`` items with an id above ``after_id``, oldest first; removes nothing.

        ``after_id`` lets a sender that has items in flight fetch the ones after them.

        Raises:
            OutputClosedError: the spool is closed.
            SpoolError: the read failed.
        """
        with self._lock:
            self._check_open()
            try:
                rows = self._connection.execute(
                    "SELECT id, key, payload FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                    (int(after_id), max(0, int(n))),
                ).fetchall()
            except sqlite3.Error as error:
                raise SpoolError(f"cannot read spool {self.path}: {error}") from error
        return [SpoolItem(int(row[0]), row[1], bytes(row[2])) for row in rows]

    def ack(self, item_id: int) -> bool:
        """Remove the item ``item_id`` (delivered); True if it was there. Committed on return.

        Raises:
            OutputClosedError: the spool is closed.
            SpoolError: the write failed.
        """
        return self.ack_many([item_id]) == 1

    def ack_many(self, item_ids: Iterable[int]) -> int:
        """Remove these items in one transaction; returns how many were there.

        Raises:
            OutputClosedError: the spool is closed.
            SpoolError: the write failed; nothing was removed.
        """
        ids = [(int(item_id),) for item_id in item_ids]
        if not ids:
            return 0
        with self._lock:
            self._check_open()
            before = self._connection.total_changes
            self._write("DELETE FROM spool WHERE id = ?", ids, many=True)
            removed = self._connection.total_changes - before
            self._count -= removed
            self._changed.notify_all()
            return removed

    def ack_through(self, item_id: int) -> int:
        """Remove every item with an id up to and including ``item_id``; returns how many.

        Raises:
            OutputClosedError: the spool is closed.
            SpoolError: the write failed; nothing was removed.
        """
        with self._lock:
            self._check_open()
            cursor = self._write("DELETE FROM spool WHERE id <= ?", (int(item_id),))
            removed = max(0, cursor.rowcount)
            self._count -= removed
            self._changed.notify_all()
            return removed

    def wait_for_items(self, timeout_s: float, after_id: int = 0) -> bool:
        """Block until an item with an id above ``after_id`` is queued, the spool is closed, or
        ``timeout_s`` passes. Returns True if such an item is there.

        Only appends made through this object (this process) wake it before the timeout.

        Raises:
            SpoolError: the read failed.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while not self._closed:
                try:
                    row = self._connection.execute(
                        "SELECT 1 FROM spool WHERE id > ? LIMIT 1", (int(after_id),)).fetchone()
                except sqlite3.Error as error:
                    raise SpoolError(f"cannot read spool {self.path}: {error}") from error
                if row is not None:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return False

    def __len__(self) -> int:
        """Number of items appended and not yet acknowledged."""
        with self._lock:
            return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Checkpoint the WAL into the database, close it and release the lock. Idempotent.

        Unacknowledged items stay in the file for the next :class:`Spool` on it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            try:
                self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:  # the data is safe in the WAL; log and go on
                logger.warning("spool %s: WAL checkpoint on close failed: %s", self.path, error)
            finally:
                self._connection.close()
                os.close(self._lock_fd)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._count} pending"
        return f"Spool({str(self.path)!r}, {state})"


def wait_until(state: threading.Condition, done: Callable[[], bool], given_up: Callable[[], bool],
               timeout_s: float) -> bool:
    """Wait on ``state`` (a condition its owner notifies on progress) until ``done()``, until
    ``given_up()`` (a failure, a stop) or for ``timeout_s`` seconds; returns ``done()``. Polls
    every 50 ms as well, in case a notification is missed. The outputs' ``flush``."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    with state:
        while True:
            finished = done()
            remaining = deadline - time.monotonic()
            if finished or given_up() or remaining <= 0:
                return finished
            state.wait(min(remaining, 0.05))
