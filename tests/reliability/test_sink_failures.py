"""Event sinks under failure (issue #11 items 2, 3 and 10), each reproduced first:

- a full disk on one sink must not stop the others, and a failed background sync must be
  noticed within about a frame;
- existing events are never wiped without a word: reruns append, a foreign file or table is
  refused, two writers on one file are refused;
- an events file removed mid-run (log rotation) is recreated with a warning (CSV/JSONL) or
  reported (SQLite).

A full disk is simulated by making the sink's file object (or SQLite connection) raise
``OSError(ENOSPC)`` / ``sqlite3.OperationalError``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv

from app.counting import CountEvent, CountingConfig, Direction, LineSpec
from app.frames import Frame, SourceStats
from app.pipeline import Pipeline, PipelineConfig
from app.sinks import (
    EventSinkError,
    EventsFileLockedError,
    EventsFileRemovedError,
    EventsMode,
    ForeignEventsFileError,
    open_event_sink,
    read_events,
)
from tracker import ByteTrack

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSIONS = ("csv", "jsonl", "sqlite")
TEXT_EXTENSIONS = ("csv", "jsonl")

EVENTS = [
    CountEvent(float(i), i, "door", i, "person", Direction.IN if i % 2 else Direction.OUT)
    for i in range(6)
]


# ------------------------------------------------------------------------------ fakes
class Frames:
    """A file-like FrameSource of ``n_frames`` synthetic 96x128 frames at 25 fps."""

    def __init__(self, n_frames: int) -> None:
        self.name, self.is_live, self.fps, self.stats = "synthetic", False, 25.0, SourceStats()
        self.n_frames = n_frames
        self.index_of_image: dict[int, int] = {}

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.n_frames):
            image = np.full((96, 128, 3), i % 251, dtype=np.uint8)
            self.index_of_image[id(image)] = i
            yield Frame(index=i, timestamp_s=i / self.fps, image=image, source=self.name)

    def close(self) -> None:
        pass


def swinging_people(source: Frames, people: int = 4, until_frame: int | None = None, delay_s: float = 0.0):
    """``people`` 40 px wide boxes swinging left and right across x=64 (4 px a frame, period 16
    frames), each at its own height: many line crossings. After ``until_frame`` they stop left
    of the line."""

    def detect(image: np.ndarray) -> sv.Detections:
        index = source.index_of_image[id(image)]
        if delay_s:
            time.sleep(delay_s)
        phase = index % 16
        if until_frame is not None and index > until_frame:
            phase = 0
        x = 30.0 + 4.0 * (phase if phase < 8 else 16 - phase)  # centre 50 .. 82 px
        xyxy = np.array([[x, 4.0 + 22.0 * p, x + 40.0, 20.0 + 22.0 * p] for p in range(people)], np.float32)
        return sv.Detections(xyxy=xyxy, confidence=np.full(people, 0.9, np.float32),
                             class_id=np.zeros(people, np.int64),
                             data={"class_name": np.array(["person"] * people)})

    return detect


VERTICAL_LINE = CountingConfig(lines=(LineSpec("v", (64.0, 0.0), (64.0, 96.0)),))


def run_pipeline(source: Frames, detector, sinks: list[Any], on_result=None) -> Pipeline:
    pipeline = Pipeline(source, detector, ByteTrack(frame_rate=25), counting=VERTICAL_LINE,
                        event_sinks=sinks, config=PipelineConfig())
    pipeline.run(on_result)
    return pipeline


def fill_disk_after(sink: Any, good_flushes: int) -> None:
    """Make ``sink``'s file fail with ENOSPC from the ``good_flushes + 1``-th flush on (each
    CSV/JSONL event is flushed once)."""
    real_flush = sink._file.flush
    calls = {"n": 0}

    def flush() -> None:
        calls["n"] += 1
        if calls["n"] > good_flushes:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush()

    sink._file.flush = flush


# ============================================================ item 2: one failing sink
def test_a_full_disk_on_one_sink_does_not_cost_the_other_sinks_any_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = open_event_sink(tmp_path / "full.jsonl")
    healthy = open_event_sink(tmp_path / "healthy.csv")
    fill_disk_after(full, good_flushes=5)
    source = Frames(200)
    with caplog.at_level(logging.ERROR):
        pipeline = run_pipeline(source, swinging_people(source), [full, healthy])
    report = pipeline.report
    assert report.events_total > 60, "test setup: too few events"
    assert report.status == "finished" and report.error is None  # counting went on
    assert len(read_events(tmp_path / "healthy.csv")) == report.events_total
    assert len(read_events(tmp_path / "full.jsonl")) == 5
    assert len(report.sink_errors) == 1
    line = report.sink_errors[0]
    assert "full.jsonl" in line and "No space left" in line and "disk is full" in line
    assert f"({report.events_total - 5} events not written to it)" in line
    assert f"event sink failed: {line}" in report.summary()
    assert list(report.to_dict()["sink_errors"]) == [line]
    # Logged once with the file name, not once per event.
    failure_logs = [r for r in caplog.records if r.name == "app.pipeline" and "full.jsonl" in r.getMessage()
                    and "failed" in r.getMessage() and r.levelno == logging.ERROR]
    assert len(failure_logs) == 1


def test_a_run_with_healthy_sinks_reports_no_sink_errors(tmp_path: Path) -> None:
    source = Frames(20)
    pipeline = run_pipeline(source, swinging_people(source, people=1), [open_event_sink(tmp_path / "e.sqlite")])
    assert pipeline.report.sink_errors == ()
    assert "event sink failed" not in pipeline.report.summary()


def test_a_failed_background_commit_is_noticed_within_a_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The old pipeline noticed only at the next event (13 s later in the field, here: never
    before the end); events stop after frame 8, the commit fails about 20 ms later."""
    sink = open_event_sink(tmp_path / "events.sqlite", sync_interval_s=0.02)
    other = open_event_sink(tmp_path / "other.jsonl")
    failed_at: list[float] = []

    def broken_commit() -> None:
        if sink._conn.in_transaction:
            failed_at.append(time.monotonic())
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(sink, "_sync", broken_commit)
    source = Frames(250)
    frame_out_at: list[float] = []
    with caplog.at_level(logging.ERROR, logger="app.pipeline"):
        pipeline = run_pipeline(source, swinging_people(source, people=1, until_frame=8, delay_s=0.01),
                                [sink, other], on_result=lambda result: frame_out_at.append(time.monotonic()))
    assert failed_at, "test setup: the background commit never ran"
    noticed = [r for r in caplog.records if r.name == "app.pipeline" and "events.sqlite" in r.getMessage()
               and "background sync" in r.getMessage()]
    assert len(noticed) == 1
    noticed_at = noticed[0].created - time.time() + time.monotonic()  # wall clock -> monotonic
    frames_between = sum(failed_at[0] < t < noticed_at for t in frame_out_at)
    assert frames_between <= 2, f"noticed {frames_between} frames after the failure"
    report = pipeline.report
    assert len(report.sink_errors) == 1 and "database or disk is full" in report.sink_errors[0]
    assert len(read_events(tmp_path / "other.jsonl")) == report.events_total


def test_a_sink_failure_without_events_after_it_is_still_reported(tmp_path: Path) -> None:
    """The sink's own failure property, read every frame: the background sync failed."""
    sink = open_event_sink(tmp_path / "e.jsonl", sync_interval_s=0.01)
    sink.write(EVENTS[0])

    def broken_sync() -> None:
        raise OSError(errno.EIO, "Input/output error")

    sink._sync = broken_sync  # type: ignore[method-assign]
    deadline = time.monotonic() + 5.0
    while sink.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert isinstance(sink.failure, EventSinkError) and "e.jsonl" in str(sink.failure)
    with pytest.raises(EventSinkError, match="Input/output error"):
        sink.check()
    with pytest.raises(EventSinkError, match="Input/output error"):
        sink.write(EVENTS[1])
    with pytest.raises(EventSinkError, match="Input/output error"):
        sink.close()


@pytest.mark.parametrize("extension", TEXT_EXTENSIONS)
def test_a_write_failure_names_the_file_and_the_sink_stays_failed(tmp_path: Path, extension: str) -> None:
    sink = open_event_sink(tmp_path / f"events.{extension}")
    sink.write(EVENTS[0])
    fill_disk_after(sink, good_flushes=0)
    with pytest.raises(EventSinkError, match=rf"events\.{extension}.*No space left.*free space"):
        sink.write(EVENTS[1])
    assert sink.failure is not None
    with pytest.raises(EventSinkError, match="No space left"):
        sink.write(EVENTS[2])
    with pytest.raises(EventSinkError, match="No space left"):
        sink.close()
    assert sink.closed
    assert read_events(tmp_path / f"events.{extension}")[:1] == EVENTS[:1]


def test_a_sqlite_insert_failure_names_the_file(tmp_path: Path) -> None:
    sink = open_event_sink(tmp_path / "events.sqlite")
    real_conn = sink._conn

    class FullDisk:
        in_transaction = False

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return real_conn.execute(sql, *args)

        def close(self) -> None:
            real_conn.close()

    sink._conn = FullDisk()  # type: ignore[assignment]
    with pytest.raises(EventSinkError, match=r"events\.sqlite.*disk is full"):
        sink.write(EVENTS[0])
    with pytest.raises(EventSinkError, match="disk is full"):
        sink.close()


# ============================================================ item 3: existing events
@pytest.mark.parametrize("extension", EXTENSIONS)
def test_a_rerun_on_the_same_file_keeps_the_earlier_events(tmp_path: Path, extension: str) -> None:
    """Reproduced: the second run truncated the file (2 rows -> 0)."""
    path = tmp_path / f"events.{extension}"
    for run in range(2):
        source = Frames(20)  # crossings at frames 7 and 17
        run_pipeline(source, swinging_people(source, people=1), [open_event_sink(path)])
    # the runs' wall clocks differ: the same events otherwise
    events = [dataclasses.replace(event, wall_time=None) for event in read_events(path)]
    assert len(events) == 4 and events[:2] == events[2:]


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_a_second_writer_on_the_same_file_is_refused(tmp_path: Path, extension: str) -> None:
    """Reproduced: two runs at once left SQLite with half the events and JSONL NUL-padded."""
    path = tmp_path / f"events.{extension}"
    first = open_event_sink(path)
    first.write_many(EVENTS[:3])
    for mode in EventsMode:
        with pytest.raises(EventsFileLockedError, match=rf"events\.{extension}.*another yolov7-track run"):
            open_event_sink(path, mode=mode)
    first.write_many(EVENTS[3:])
    first.close()
    assert read_events(path) == EVENTS  # the refused writers changed nothing
    with open_event_sink(path) as second:  # the lock went with the first sink
        second.write(EVENTS[0])
    assert read_events(path) == EVENTS + EVENTS[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no lock file left behind


_HOLDER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from app.sinks import open_event_sink
    sink = open_event_sink(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.read()  # hold the file until the parent closes our stdin
    sink.close()
    """
)


@pytest.mark.parametrize("extension", ["jsonl", "sqlite"])
def test_a_writer_in_another_process_is_refused(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"events.{extension}"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), str(REPO_ROOT)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready", holder.stderr.read()
        with pytest.raises(EventsFileLockedError, match="another yolov7-track run"):
            open_event_sink(path)
    finally:
        holder.communicate(timeout=60)
    assert holder.returncode == 0
    with open_event_sink(path) as sink:
        sink.write(EVENTS[0])


def _foreign_db(path: Path, table_sql: str, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(table_sql)
    name = table_sql.split()[2]
    conn.executemany(f"INSERT INTO {name} VALUES (?, ?)", [(i, f"row {i}") for i in range(rows)])
    conn.commit()
    conn.close()


@pytest.mark.parametrize("mode", list(EventsMode))
def test_a_foreign_events_table_is_never_dropped(tmp_path: Path, mode: EventsMode) -> None:
    """Reproduced: ``--events other_app.db`` dropped its ``events`` table (100 rows -> 0)."""
    path = tmp_path / "other_app.db"
    _foreign_db(path, "CREATE TABLE events (ticket INTEGER, note TEXT)", 100)
    before = path.read_bytes()
    expected = "holds a table 'events' with other columns.*not ours" if mode is not EventsMode.NEW else "'new'"
    with pytest.raises(EventSinkError, match=expected):
        open_event_sink(path, mode=mode)
    assert path.read_bytes() == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 100
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal"  # not altered either
    finally:
        conn.close()
    assert not (tmp_path / "other_app.db.lock").exists()


@pytest.mark.parametrize("mode", [EventsMode.APPEND, EventsMode.OVERWRITE])
def test_a_database_with_other_tables_is_refused(tmp_path: Path, mode: EventsMode) -> None:
    path = tmp_path / "other_app.db"
    _foreign_db(path, "CREATE TABLE invoices (id INTEGER, note TEXT)", 3)
    before = path.read_bytes()
    with pytest.raises(ForeignEventsFileError, match=r"table 'invoices'.*choose another events file"):
        open_event_sink(path, mode=mode)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("shopping list: milk, eggs\n" * 100)
    with pytest.raises(ForeignEventsFileError, match="not a SQLite database"):
        open_event_sink(path)
    assert path.read_text() == "shopping list: milk, eggs\n" * 100


def test_our_table_with_an_added_index_is_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[:2])
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX by_zone ON events (zone)")
    conn.close()
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[2:])
    assert read_events(path) == EVENTS
    with open_event_sink(path, mode="overwrite") as sink:
        sink.write(EVENTS[0])
    assert read_events(path) == EVENTS[:1]


def test_a_jsonl_file_whose_last_line_is_not_an_event_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"level": "info", "msg": "started"}\n')
    with pytest.raises(ForeignEventsFileError, match=r"log\.jsonl.*not a count event.*--events-mode"):
        open_event_sink(path)
    assert path.read_text() == '{"level": "info", "msg": "started"}\n'
    with open_event_sink(path, mode="overwrite") as sink:  # the user said so
        sink.write(EVENTS[0])
    assert read_events(path) == EVENTS[:1]


@pytest.mark.parametrize(
    ("extension", "fragment", "kept"),
    [
        ("jsonl", '{"timestamp_s": 9.0, "frame_in', False),              # killed mid-write: cut off
        ("jsonl", '{"timestamp_s": 9.0, "frame_index": 9, "zone": "door", "track_id": 9, '
                  '"class_name": "person", "direction": "in", "dwell_s": null}', True),  # only the newline missing
        ("csv", "9.0,9,do", False),
        ("csv", "9.0,9,door,9,person,in,,,", True),
        ("csv", "9.0,9,door,9,person,in,", False),  # 7 of the 9 cells: cut before camera_id
    ],
)
def test_appending_after_an_incomplete_last_line_never_glues_events(
    tmp_path: Path, extension: str, fragment: str, kept: bool
) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS[:2])
    with open(path, "a", encoding="utf-8") as f:
        f.write(fragment)
    with open_event_sink(path) as sink:
        sink.write(EVENTS[2])
    assert path.read_text().endswith("\n")
    events = read_events(path)  # strict: would raise on a glued or broken line
    if kept:
        assert events == [*EVENTS[:2], CountEvent(9.0, 9, "door", 9, "person", Direction.IN), EVENTS[2]]
    else:
        assert events == EVENTS[:3]


def test_a_csv_killed_while_writing_its_header_gets_a_whole_header(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("timestamp_s,frame_in")
    with open_event_sink(path) as sink:
        sink.write(EVENTS[0])
    assert read_events(path) == EVENTS[:1]


def test_the_gui_export_replaces_the_file_the_user_chose(tmp_path: Path) -> None:
    from app.gui.events_table import export_events_csv

    path = tmp_path / "export.csv"
    path.write_text("old,unrelated\n1,2\n")
    assert export_events_csv(EVENTS[:2], path) == 2
    assert read_events(path) == EVENTS[:2]


# ============================================================ item 10: file removed mid-run
@pytest.mark.parametrize("extension", TEXT_EXTENSIONS)
@pytest.mark.parametrize("how", ["deleted", "renamed away"])
def test_a_removed_text_file_is_recreated_with_one_warning(
    tmp_path: Path, extension: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Reproduced: the run exited 0 with every event after the deletion gone, no warning."""
    path = tmp_path / f"events.{extension}"
    rotated = tmp_path / f"events-1.{extension}"
    sink = open_event_sink(path)
    sink.write_many(EVENTS[:2])
    if how == "deleted":
        path.unlink()
    else:
        path.rename(rotated)
    with caplog.at_level(logging.WARNING, logger="app.sinks"):
        sink.write_many(EVENTS[2:4])
        sink.write_many(EVENTS[4:])
    sink.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert read_events(path) == EVENTS[2:]  # with the CSV header: read_events checks it
    if how == "renamed away":
        assert read_events(rotated) == EVENTS[:2]
    with pytest.raises(EventsFileLockedError):  # the new file is locked while a sink writes it
        with open_event_sink(path) as again:
            open_event_sink(path)
    assert again.closed


def test_a_text_file_replaced_by_someone_else_is_not_written_into(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    sink = open_event_sink(path)
    sink.write(EVENTS[0])
    path.unlink()
    path.write_text("a,b\n1,2\n")  # something else now lives at the path
    with pytest.raises(ForeignEventsFileError, match="header"):
        sink.write(EVENTS[1])
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(ForeignEventsFileError):
        sink.close()


def test_a_removed_sqlite_database_is_a_reported_failure(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    sink = open_event_sink(path)
    sink.write(EVENTS[0])
    path.unlink()
    with pytest.raises(EventsFileRemovedError, match=r"events\.sqlite was removed.*CSV/JSONL"):
        sink.write(EVENTS[1])
    assert isinstance(sink.failure, EventsFileRemovedError)
    with pytest.raises(EventsFileRemovedError):
        sink.close()
    assert not (tmp_path / "events.sqlite.lock").exists()


def test_events_after_a_mid_run_deletion_land_in_the_recreated_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    source = Frames(60)
    deleted: list[int] = []

    def delete_after_first_event(result) -> None:
        if result.events and not deleted:
            path.unlink()
            deleted.append(len(result.events))

    with caplog.at_level(logging.WARNING, logger="app.sinks"):
        pipeline = run_pipeline(source, swinging_people(source, people=1), [open_event_sink(path)],
                                on_result=delete_after_first_event)
    report = pipeline.report
    assert report.sink_errors == () and report.events_total > 5
    assert len(read_events(path)) == report.events_total - deleted[0]
    assert sum("removed" in r.getMessage() for r in caplog.records) == 1
