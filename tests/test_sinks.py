"""Event sinks: round trips, extension dispatch, context-manager behaviour, crash safety."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.counting import EVENT_FIELDS, CountEvent, Direction
from app.counting.events import LEGACY_EVENT_FIELDS
from app.sinks import (
    CsvEventSink,
    EventSinkError,
    EventsFileExistsError,
    EventsMode,
    ForeignEventsFileError,
    JsonlEventSink,
    SqliteEventSink,
    UnsupportedEventFileError,
    open_event_sink,
    read_events,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = ("csv", "jsonl", "sqlite")

EVENTS = [
    CountEvent(0.0, 0, "door", 1, "person", Direction.IN),
    CountEvent(0.5, 12, "door", 2, "car", Direction.OUT),
    CountEvent(1.25, 30, "queue", 1, "person", Direction.ENTER),
    CountEvent(4.0, 96, "queue", 1, "person", Direction.EXIT, dwell_s=2.75),
    CountEvent(4.0, 96, "naïve,\"quoted\" zone", 7, "bicycle", "out"),
]


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_round_trip_keeps_every_field_and_order(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        for event in EVENTS:
            sink.write(event)
    assert sink.closed
    assert read_events(path) == EVENTS


@pytest.mark.parametrize(
    ("name", "sink_type"),
    [
        ("a.csv", CsvEventSink),
        ("a.CSV", CsvEventSink),
        ("a.jsonl", JsonlEventSink),
        ("a.ndjson", JsonlEventSink),
        ("a.sqlite", SqliteEventSink),
        ("a.sqlite3", SqliteEventSink),
        ("a.db", SqliteEventSink),
    ],
)
def test_sink_is_chosen_by_extension(tmp_path: Path, name: str, sink_type: type) -> None:
    with open_event_sink(tmp_path / name) as sink:
        assert type(sink) is sink_type


@pytest.mark.parametrize("name", ["events.txt", "events", "events.json"])
def test_unknown_extension_is_refused_with_the_supported_list(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsupportedEventFileError, match=r"\.csv.*\.jsonl.*\.sqlite"):
        open_event_sink(tmp_path / name)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_append_is_the_default_and_keeps_old_events(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[:2])
    with open_event_sink(path) as sink:
        assert sink.mode is EventsMode.APPEND
        sink.write_many(EVENTS[2:])
    assert read_events(path) == EVENTS


@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize("mode", [EventsMode.OVERWRITE, "overwrite"])
def test_overwrite_drops_old_events(tmp_path: Path, extension: str, mode: EventsMode | str) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[:2])
    with open_event_sink(path, mode=mode) as sink:
        sink.write(EVENTS[3])
    assert read_events(path) == [EVENTS[3]]


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_new_refuses_an_existing_file_and_leaves_it_unchanged(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path, mode="new") as sink:  # a missing file is fine
        sink.write_many(EVENTS[:2])
    before = path.read_bytes()
    with pytest.raises(EventsFileExistsError, match=r"events\..*'new'.*--events-mode"):
        open_event_sink(path, mode="new")
    assert path.read_bytes() == before
    assert read_events(path) == EVENTS[:2]


@pytest.mark.parametrize("extension", ["csv", "jsonl"])
def test_new_accepts_an_existing_empty_file(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    path.touch()
    with open_event_sink(path, mode=EventsMode.NEW) as sink:
        sink.write(EVENTS[0])
    assert read_events(path) == EVENTS[:1]


@pytest.mark.parametrize("mode", ["APPEND", "replace", "", None, True])
def test_invalid_mode_is_refused_naming_the_allowed_values(tmp_path: Path, mode: object) -> None:
    with pytest.raises(ValueError, match="'append', 'new', 'overwrite'"):
        open_event_sink(tmp_path / "events.csv", mode=mode)  # type: ignore[arg-type]
    assert not (tmp_path / "events.csv").exists()


def test_csv_append_to_a_foreign_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ForeignEventsFileError, match="header.*--events-mode overwrite"):
        open_event_sink(path)
    assert path.read_text() == "a,b,c\n1,2,3\n"


def test_csv_has_header_and_empty_dwell(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    with open_event_sink(path) as sink:
        sink.write(EVENTS[0])
    lines = path.read_text().splitlines()
    # dwell_s, camera_id and wall_time empty: every row has the header's 9 cells
    assert lines == [",".join(EVENT_FIELDS), "0.0,0,door,1,person,in,,,"]


def test_sqlite_is_in_wal_mode_and_readable_while_open(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with open_event_sink(path, sync_interval_s=0.05) as sink:
        sink.write_many(EVENTS)
        reader = sqlite3.connect(path)
        try:
            assert reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            deadline = time.monotonic() + 5.0
            count = 0
            while count < len(EVENTS) and time.monotonic() < deadline:
                time.sleep(0.02)
                count = reader.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            assert count == len(EVENTS)  # committed by the background thread, not by close()
        finally:
            reader.close()


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_exception_in_flight_is_not_hidden_by_a_failing_close(
    tmp_path: Path, extension: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sink = open_event_sink(tmp_path / f"events.{extension}")

    def broken_close() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(sink, "_close_file", broken_close)
    with caplog.at_level(logging.ERROR, logger="app.sinks"):
        with pytest.raises(KeyError, match="original"):
            with sink:
                sink.write(EVENTS[0])
                raise KeyError("original")
    assert "disk gone" in caplog.text


def test_close_error_without_exception_in_flight_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = open_event_sink(tmp_path / "events.jsonl")

    def broken_close() -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(sink, "_close_file", broken_close)
    with pytest.raises(EventSinkError, match="disk gone"):
        with sink:
            sink.write(EVENTS[0])


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_write_after_close_raises(tmp_path: Path, extension: str) -> None:
    sink = open_event_sink(tmp_path / f"events.{extension}")
    sink.close()
    sink.close()  # idempotent
    with pytest.raises(EventSinkError, match="after close"):
        sink.write(EVENTS[0])


def test_background_sync_error_surfaces_on_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = open_event_sink(tmp_path / "events.jsonl", sync_interval_s=0.02)
    failed = threading.Event()

    def broken_sync() -> None:
        failed.set()
        raise OSError("fsync failed")

    monkeypatch.setattr(sink, "_sync", broken_sync)
    sink.write(EVENTS[0])
    assert failed.wait(5.0)
    time.sleep(0.05)
    with pytest.raises(EventSinkError, match="fsync failed"):
        sink.write(EVENTS[1])
    with pytest.raises(EventSinkError, match="fsync failed"):
        sink.close()


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_a_healthy_sink_reports_no_failure(tmp_path: Path, extension: str) -> None:
    with open_event_sink(tmp_path / f"events.{extension}", sync_interval_s=0.01) as sink:
        sink.write_many(EVENTS)
        time.sleep(0.05)  # let the background sync run
        assert sink.failure is None
        sink.check()  # does not raise
    assert sink.failure is None


def test_invalid_sync_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync_interval_s"):
        open_event_sink(tmp_path / "events.csv", sync_interval_s=0)


def test_reader_skips_only_an_incomplete_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[:2])
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"timestamp_s": 9.0, "frame_in')  # killed mid-write
    assert read_events(path) == EVENTS[:2]
    path.write_text('{"broken": \n' + path.read_text())
    with pytest.raises(ValueError, match=r"events\.jsonl:1"):
        read_events(path)


# --------------------------------------------------------------------------- SIGKILL
_WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from app.counting import CountEvent
    from app.sinks import open_event_sink

    path, busy_s = sys.argv[1], float(sys.argv[2])
    sink = open_event_sink(path)  # default sync interval; never closed: we get killed
    started = time.monotonic()
    index = 0
    while True:
        if time.monotonic() - started < busy_s:
            sink.write(CountEvent(time.time(), index, "line", index, "person", "in"))
            # Reported only once write() has returned, i.e. the event was handed to the sink.
            print(index, time.time(), flush=True)
            index += 1
        time.sleep(0.005)
    """
)


@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize(
    ("busy_s", "kill_after_s"),
    [(10.0, 2.0), (0.8, 2.0)],
    ids=["killed-while-writing", "killed-while-idle"],
)
def test_sigkill_loses_nothing_older_than_one_second(
    tmp_path: Path, extension: str, busy_s: float, kill_after_s: float
) -> None:
    """Every event handed to the sink more than 1 s before SIGKILL is in the file afterwards.

    "killed-while-idle" stops writing 1.2 s before the kill, so only the background sync (not a
    later write or a close) can have made those events durable.
    """
    path = tmp_path / f"events.{extension}"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(busy_s), str(REPO_ROOT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[tuple[int, float]] = []

    def collect() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            index, written_at = line.split()
            reported.append((int(index), float(written_at)))

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30.0
        while not reported and time.monotonic() < deadline:  # wait for the interpreter to start
            if child.poll() is not None:
                pytest.fail(f"writer died: {child.stderr.read() if child.stderr else ''}")
            time.sleep(0.01)
        assert reported, "the writer never reported an event"
        time.sleep(kill_after_s)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join(timeout=10)

    assert child.returncode == -signal.SIGKILL
    stored = {event.frame_index for event in read_events(path)}
    must_have = [index for index, written_at in reported if written_at < killed_at - 1.0]
    assert len(must_have) > 10, "test setup: too few events old enough to check"
    missing = sorted(set(must_have) - stored)
    assert not missing, f"{len(missing)} events older than 1 s lost, first {missing[:5]}"


# ------------------------------------------------------- camera_id, wall_time; older files
STAMPED = [
    CountEvent(0.0, 0, "door", 1, "person", Direction.IN, camera_id="gate-1",
               wall_time="2026-12-06T13:05:01.250Z"),
    CountEvent(4.0, 96, "queue", 1, "person", Direction.EXIT, dwell_s=2.75, camera_id="caméra, \"2\"",
               wall_time="2026-12-06T13:05:05.000Z"),
    CountEvent(5.0, 120, "door", 3, "car", Direction.OUT),  # neither: a video file
]
#: The statement the previous version created its table with (no camera_id, wall_time, counts).
LEGACY_SQLITE_TABLE = (
    "CREATE TABLE events (id INTEGER PRIMARY KEY, timestamp_s REAL NOT NULL, frame_index INTEGER NOT NULL, "
    "zone TEXT NOT NULL, track_id INTEGER NOT NULL, class_name TEXT NOT NULL, direction TEXT NOT NULL, "
    "dwell_s REAL)"
)


def _legacy_csv(path: Path, events: list[CountEvent]) -> None:
    """A CSV file as the previous version wrote it: 7 columns."""
    rows = [",".join(LEGACY_EVENT_FIELDS)]
    for e in events:
        dwell = "" if e.dwell_s is None else repr(e.dwell_s)
        rows.append(f"{e.timestamp_s!r},{e.frame_index},{e.zone},{e.track_id},{e.class_name},{e.direction.value},{dwell}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _legacy_sqlite(path: Path, events: list[CountEvent]) -> None:
    """A SQLite file as the previous version left it: WAL mode, one table of 8 columns."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(LEGACY_SQLITE_TABLE)
    conn.executemany(
        f"INSERT INTO events ({', '.join(LEGACY_EVENT_FIELDS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [[e.as_dict()[k] for k in LEGACY_EVENT_FIELDS] for e in events],
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _unstamped(events: list[CountEvent]) -> list[CountEvent]:
    return [dataclasses.replace(e, camera_id=None, wall_time=None) for e in events]


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_round_trip_keeps_camera_id_and_wall_time(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        sink.write_many(STAMPED)
    with open_event_sink(path) as sink:  # and appending to a file of this version
        sink.write_many(EVENTS[:1])
    assert read_events(path) == [*STAMPED, EVENTS[0]]


def test_csv_has_the_two_new_columns_last(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    with open_event_sink(path) as sink:
        sink.write(STAMPED[0])
    assert path.read_text().splitlines() == [
        "timestamp_s,frame_index,zone,track_id,class_name,direction,dwell_s,camera_id,wall_time",
        "0.0,0,door,1,person,in,,gate-1,2026-12-06T13:05:01.250Z",
    ]


def test_sqlite_has_the_two_new_columns_last(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with open_event_sink(path) as sink:
        sink.write(STAMPED[0])
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        row = conn.execute("SELECT camera_id, wall_time FROM events").fetchone()
    finally:
        conn.close()
    assert columns == ["id", *EVENT_FIELDS]
    assert row == ("gate-1", "2026-12-06T13:05:01.250Z")


def test_an_old_csv_is_appended_to_in_its_own_layout_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The old header stays valid for every row: the new fields are not recorded there (logged)."""
    path = tmp_path / "events.csv"
    _legacy_csv(path, EVENTS[:2])
    before = path.read_text()
    assert read_events(path) == EVENTS[:2]  # the reader takes the old layout
    with caplog.at_level(logging.INFO, logger="app.sinks"):
        with open_event_sink(path) as sink:
            assert sink.columns == LEGACY_EVENT_FIELDS
            sink.write_many(STAMPED)
            sink.write_many(STAMPED)
    text = path.read_text()
    assert text.startswith(before)
    assert {len(row) for row in csv.reader(text.splitlines())} == {7}  # every row matches the header
    assert read_events(path) == [*EVENTS[:2], *_unstamped(STAMPED), *_unstamped(STAMPED)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "events.csv" in warnings[0] and "camera_id" in warnings[0] and "new events file" in warnings[0]
    assert any("7 columns of an earlier" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_an_old_csv_with_only_its_header_stays_old_and_overwrite_makes_it_new(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(LEGACY_EVENT_FIELDS))  # killed right after the header, before its newline
    with open_event_sink(path) as sink:
        assert sink.columns == LEGACY_EVENT_FIELDS
        sink.write(STAMPED[0])
    assert read_events(path) == _unstamped(STAMPED[:1])
    with open_event_sink(path, mode="overwrite") as sink:
        assert sink.columns == EVENT_FIELDS
        sink.write(STAMPED[0])
    assert read_events(path) == STAMPED[:1]


def test_an_old_csv_removed_mid_run_is_recreated_with_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    _legacy_csv(path, EVENTS[:1])
    with open_event_sink(path) as sink:
        sink.write(STAMPED[0])
        path.unlink()
        sink.write(STAMPED[1])
        assert sink.columns == EVENT_FIELDS
    assert read_events(path) == STAMPED[1:2]


def test_a_csv_row_of_the_wrong_width_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(",".join(EVENT_FIELDS) + "\n0.0,0,door,1,person,in,\n")  # 7 cells under 9 columns
    with pytest.raises(ValueError, match=r"events\.csv:2"):
        read_events(path)


def test_an_old_jsonl_is_appended_to_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old_lines = [
        json.dumps({k: v for k, v in e.as_dict().items() if k in LEGACY_EVENT_FIELDS}) for e in EVENTS[:2]
    ]
    path.write_text("\n".join(old_lines) + "\n")
    with open_event_sink(path) as sink:
        sink.write_many(STAMPED)
    assert read_events(path) == [*EVENTS[:2], *STAMPED]


def test_an_old_sqlite_file_reads_and_is_upgraded_when_appended_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.sqlite"
    _legacy_sqlite(path, EVENTS[:3])
    assert read_events(path) == EVENTS[:3]  # readable without any upgrade
    with caplog.at_level(logging.INFO, logger="app.sinks"):
        with open_event_sink(path) as sink:
            sink.write_many(STAMPED)
    assert "adding the columns camera_id and wall_time" in caplog.text
    assert read_events(path) == [*EVENTS[:3], *STAMPED]
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
        counted = conn.execute("SELECT SUM(count) FROM counts").fetchone()[0]
    finally:
        conn.close()
    assert columns == ["id", *EVENT_FIELDS]
    assert counted == 3 + len(STAMPED)  # the old events are in the counts table too
    with open_event_sink(path) as sink:  # the upgraded file is ours as it is now
        sink.write(EVENTS[4])
    assert read_events(path)[-1] == EVENTS[4]


def test_an_old_sqlite_file_is_upgraded_and_emptied_by_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    _legacy_sqlite(path, EVENTS)
    with open_event_sink(path, mode="overwrite") as sink:
        sink.write(STAMPED[0])
    assert read_events(path) == STAMPED[:1]


def test_an_old_sqlite_file_is_refused_by_new_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    _legacy_sqlite(path, EVENTS[:2])
    before = path.read_bytes()
    with pytest.raises(EventsFileExistsError):
        open_event_sink(path, mode="new")
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "extra_sql",
    [
        "CREATE TABLE counts (n INTEGER)",  # a counts table that is not ours
        "ALTER TABLE events ADD COLUMN camera_id TEXT",  # half of the new columns
    ],
)
def test_a_database_with_our_names_but_other_columns_is_refused(tmp_path: Path, extra_sql: str) -> None:
    path = tmp_path / "events.sqlite"
    _legacy_sqlite(path, EVENTS[:2])
    conn = sqlite3.connect(path)
    conn.execute(extra_sql)
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ForeignEventsFileError, match="other columns.*not ours"):
        open_event_sink(path)
    assert path.read_bytes() == before


def test_reading_a_sqlite_file_that_is_not_ours_names_it(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match=r"other\.db.*no 'events' table"):
        read_events(path)
    path.write_text("not a database" * 100)
    with pytest.raises(ValueError, match=r"other\.db.*events database"):
        read_events(path)
