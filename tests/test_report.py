"""Time-bucketed counts (app.report), the SQLite counts table, and ``yolov7-track report``."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.buckets import COUNTS_BUCKET_S
from app.cli import main
from app.counting import CountEvent, Direction
from app.counting.events import wall_time_iso
from app.report import BUCKETS, REPORT_FIELDS, Clock, CountRow, ReportError, bucket_counts, read_counts
from app.sinks import EventSinkError, open_event_sink, read_events

EXTENSIONS = ("sqlite", "csv", "jsonl")
T0 = datetime(2026, 12, 6, 13, 0, tzinfo=timezone.utc)  # a whole hour


def at(minutes: float) -> str:
    """The wall time ``minutes`` after T0."""
    return wall_time_iso((T0 + timedelta(minutes=minutes)).timestamp())


def ev(minutes: float | None, camera: str | None = "gate", zone: str = "road", cls: str = "car",
       direction: str = "in", timestamp_s: float = 0.0) -> CountEvent:
    return CountEvent(timestamp_s, 0, zone, 1, cls, direction, None, camera,
                      None if minutes is None else at(minutes))


#: Hand-built events around the bucket edges of 15 min and 1 h, two cameras, two lines, two
#: classes, both directions, and media-time events (no wall time).
EVENTS = [
    ev(0), ev(0.001), ev(14.99999), ev(14.99999, direction="out"),  # 13:00 bucket
    ev(15), ev(29.5, cls="truck"), ev(29.5, cls="truck"),  # 13:15
    ev(44, camera="yard"), ev(44, camera="yard", zone="dock"),  # 13:30
    ev(59.99999, zone="dock", direction="out"),  # 13:45
    ev(60), ev(75, camera="yard"),  # 14:00, 14:15
    ev(-0.001),  # 12:45
    ev(None, camera=None, timestamp_s=0.0), ev(None, camera=None, timestamp_s=899.999),
    ev(None, camera=None, timestamp_s=900.0), ev(None, camera=None, timestamp_s=3600.0, direction="out"),
]


def rows(*specs: tuple) -> list[CountRow]:
    """CountRows from (bucket start: minutes after T0 or ('media', seconds), camera, zone, class,
    direction, count)."""
    out = []
    for start, camera, zone, cls, direction, count in specs:
        if isinstance(start, tuple):
            clock, start_s = Clock.MEDIA, start[1]
        else:
            clock, start_s = Clock.WALL, int((T0 + timedelta(minutes=start)).timestamp())
        out.append(CountRow(clock, start_s, camera, zone, cls, Direction(direction), count))
    return out


EXPECTED = {
    "15min": rows(
        (-15, "gate", "road", "car", "in", 1),
        (0, "gate", "road", "car", "in", 3), (0, "gate", "road", "car", "out", 1),
        (15, "gate", "road", "car", "in", 1), (15, "gate", "road", "truck", "in", 2),
        (30, "yard", "dock", "car", "in", 1), (30, "yard", "road", "car", "in", 1),
        (45, "gate", "dock", "car", "out", 1),
        (60, "gate", "road", "car", "in", 1),
        (75, "yard", "road", "car", "in", 1),
        (("media", 0), None, "road", "car", "in", 2), (("media", 900), None, "road", "car", "in", 1),
        (("media", 3600), None, "road", "car", "out", 1),
    ),
    "1h": rows(
        (-60, "gate", "road", "car", "in", 1),
        (0, "gate", "dock", "car", "out", 1),
        (0, "gate", "road", "car", "in", 4), (0, "gate", "road", "car", "out", 1),
        (0, "gate", "road", "truck", "in", 2),
        (0, "yard", "dock", "car", "in", 1), (0, "yard", "road", "car", "in", 1),
        (60, "gate", "road", "car", "in", 1), (60, "yard", "road", "car", "in", 1),
        (("media", 0), None, "road", "car", "in", 3), (("media", 3600), None, "road", "car", "out", 1),
    ),
}


@pytest.mark.parametrize("bucket", sorted(EXPECTED))
def test_bucket_counts_of_hand_built_events(bucket: str) -> None:
    assert bucket_counts(EVENTS, bucket) == EXPECTED[bucket]
    assert sum(row.count for row in bucket_counts(EVENTS, bucket)) == len(EVENTS)


def test_a_day_bucket_starts_at_utc_midnight_and_rows_print_iso() -> None:
    (row, *_) = bucket_counts([ev(0)], "1d")
    assert row.bucket_start == "2026-12-06T00:00:00Z"
    assert bucket_counts([ev(0)], "15min")[0].as_dict() == {
        "bucket_start": "2026-12-06T13:00:00Z", "clock": "wall", "camera_id": "gate", "zone": "road",
        "class_name": "car", "direction": "in", "count": 1,
    }
    media = bucket_counts([ev(None, timestamp_s=1000.0)], "15min")[0]
    assert (media.bucket_start, media.clock) == (900, Clock.MEDIA)


def test_negative_media_time_falls_in_the_bucket_before_zero() -> None:
    assert bucket_counts([ev(None, timestamp_s=-0.5)], "5min")[0].bucket_start_s == -300


@pytest.mark.parametrize("bucket", ["7min", "", "1H", None])
def test_an_unknown_bucket_is_refused_with_the_known_ones(bucket: object) -> None:
    with pytest.raises(ReportError, match="--bucket.*5min, 15min, 1h, 1d"):
        bucket_counts(EVENTS, bucket)  # type: ignore[arg-type]


def random_events(n: int, seed: int) -> list[CountEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        wall = rng.random() < 0.8
        out.append(CountEvent(
            timestamp_s=rng.uniform(0, 7200), frame_index=i, zone=rng.choice(["road", "dock", "gate,2"]),
            track_id=i, class_name=rng.choice(["car", "truck", "person"]),
            direction=rng.choice(list(Direction)), camera_id=rng.choice(["a", "b", None]),
            wall_time=at(rng.uniform(-90, 1500)) if wall else None,
        ))
    return out


def recount(events: list[CountEvent], bucket_s: int) -> Counter:
    """An independent count: datetime arithmetic instead of app.buckets."""
    totals: Counter = Counter()
    for e in events:
        if e.wall_time is not None:
            when = datetime.strptime(e.wall_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
            seconds = (when - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(seconds=1)
            key = ("wall", seconds - seconds % bucket_s)
        else:
            key = ("media", int(e.timestamp_s // bucket_s) * bucket_s)
        totals[(*key, e.camera_id, e.zone, e.class_name, e.direction.value)] += 1
    return totals


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_counts_match_an_independent_recount(bucket: str) -> None:
    events = random_events(2000, seed=7)
    got = Counter({(r.clock.value, r.bucket_start_s, r.camera_id, r.zone, r.class_name, r.direction.value): r.count
                   for r in bucket_counts(events, bucket)})
    assert got == recount(events, BUCKETS[bucket])


# ------------------------------------------------------------------------------ SQLite counts table
def counts_table(path: Path) -> Counter:
    conn = sqlite3.connect(path)
    try:
        records = conn.execute(
            "SELECT clock, bucket_start_s, camera_id, zone, class_name, direction, count FROM counts"
        ).fetchall()
    finally:
        conn.close()
    return Counter({(clock, start, camera or None, zone, cls, direction): count
                    for clock, start, camera, zone, cls, direction, count in records})


def test_the_counts_table_equals_a_recount_of_the_events_table(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    events = random_events(1500, seed=3)
    with open_event_sink(path, sync_interval_s=0.01) as sink:
        for start in range(0, 1000, 37):  # many writes, many background commits
            sink.write_many(events[start:min(start + 37, 1000)])
    assert counts_table(path) == recount(read_events(path), COUNTS_BUCKET_S)
    with open_event_sink(path) as sink:  # reopen and append
        sink.write_many(events[1000:])
    assert read_events(path) == events
    assert counts_table(path) == recount(events, COUNTS_BUCKET_S)
    with open_event_sink(path, mode="overwrite") as sink:
        sink.write_many(events[:10])
    assert counts_table(path) == recount(events[:10], COUNTS_BUCKET_S)


def test_a_reader_never_sees_the_two_tables_disagree(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    events = random_events(600, seed=5)
    disagreements: list[tuple[int, int]] = []
    sink = open_event_sink(path, sync_interval_s=0.005)
    done = threading.Event()

    def watch() -> None:
        conn = sqlite3.connect(path)
        try:
            while not done.is_set():
                conn.execute("BEGIN")  # one snapshot for both queries
                n_events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                n_counted = conn.execute("SELECT COALESCE(SUM(count), 0) FROM counts").fetchone()[0]
                conn.execute("COMMIT")
                if n_events != n_counted:
                    disagreements.append((n_events, n_counted))
        finally:
            conn.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for event in events:
            sink.write(event)
    finally:
        sink.close()
        done.set()
        watcher.join()
    assert not disagreements


def test_a_failed_event_insert_adds_no_count(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with open_event_sink(path) as sink:
        sink.write(EVENTS[0])
    conn = sqlite3.connect(path)  # a constraint only the events table breaks
    conn.execute("CREATE TRIGGER no_dock BEFORE INSERT ON events WHEN NEW.zone = 'dock' "
                 "BEGIN SELECT RAISE(ABORT, 'no dock'); END")
    conn.commit()
    conn.close()
    sink = open_event_sink(path)
    sink.write(EVENTS[1])
    with pytest.raises(EventSinkError, match="no dock"):
        sink.write(ev(3, zone="dock"))
    with pytest.raises(EventSinkError, match="no dock"):  # the sink stays failed
        sink.close()
    assert read_events(path) == EVENTS[:2]  # the earlier event of the transaction is kept
    assert counts_table(path) == recount(EVENTS[:2], COUNTS_BUCKET_S)


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
@pytest.mark.parametrize("extension", EXTENSIONS)
def test_read_counts_of_a_file_equals_bucket_counts_of_its_events(tmp_path: Path, extension: str, bucket: str) -> None:
    path = tmp_path / f"events.{extension}"
    events = random_events(400, seed=11)
    with open_event_sink(path) as sink:
        sink.write_many(events)
    assert read_counts(path, bucket) == bucket_counts(events, bucket)
    assert read_counts(path, bucket, camera_id="a") == bucket_counts(
        [e for e in events if e.camera_id == "a"], bucket)


def test_an_old_sqlite_file_without_counts_is_reported_from_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, timestamp_s REAL NOT NULL, frame_index INTEGER "
                 "NOT NULL, zone TEXT NOT NULL, track_id INTEGER NOT NULL, class_name TEXT NOT NULL, direction "
                 "TEXT NOT NULL, dwell_s REAL)")
    conn.executemany("INSERT INTO events (timestamp_s, frame_index, zone, track_id, class_name, direction) "
                     "VALUES (?, 0, 'road', 1, 'car', 'in')", [(0.0,), (899.0,), (900.0,)])
    conn.commit()
    conn.close()
    assert read_counts(path, "15min") == rows((("media", 0), None, "road", "car", "in", 2),
                                              (("media", 900), None, "road", "car", "in", 1))
    with open_event_sink(path) as sink:  # upgraded: now from the counts table, same answer plus one
        sink.write(ev(None, camera=None, timestamp_s=1.0))
    assert read_counts(path, "15min") == rows((("media", 0), None, "road", "car", "in", 3),
                                              (("media", 900), None, "road", "car", "in", 1))


def test_from_and_to_keep_whole_buckets_starting_in_the_range(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.jsonl"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS)
    start_s = (T0 + timedelta(minutes=7)).timestamp()  # inside the 13:00 bucket: not included
    end_s = (T0 + timedelta(minutes=60)).timestamp()
    got = read_counts(path, "15min", start_s=start_s, end_s=end_s)
    assert got == [r for r in EXPECTED["15min"] if r.clock is Clock.WALL and start_s <= r.bucket_start_s < end_s]
    assert {r.bucket_start for r in got} == {"2026-12-06T13:15:00Z", "2026-12-06T13:30:00Z", "2026-12-06T13:45:00Z"}
    assert "3 rows of events without wall_time" in caplog.text


# ------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("extension", EXTENSIONS)
def test_cli_prints_csv(tmp_path: Path, extension: str, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / f"events.{extension}"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS)
    assert main(["report", str(path), "--bucket", "1h"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == ",".join(REPORT_FIELDS)
    assert lines[1:4] == [
        "2026-12-06T12:00:00Z,wall,gate,road,car,in,1",
        "2026-12-06T13:00:00Z,wall,gate,dock,car,out,1",
        "2026-12-06T13:00:00Z,wall,gate,road,car,in,4",
    ]
    assert lines[-2:] == ["0,media,,road,car,in,3", "3600,media,,road,car,out,1"]
    assert len(lines) == 1 + len(EXPECTED["1h"])


def test_cli_prints_json_with_filters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "events.sqlite"
    with open_event_sink(path) as sink:
        sink.write_many(EVENTS)
    assert main(["report", str(path), "--format", "json", "--camera", "yard",
                 "--from", "2026-12-06T13:00Z", "--to", "2026-12-06T14:15:00+00:00"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out) == [
        {"bucket_start": "2026-12-06T13:30:00Z", "clock": "wall", "camera_id": "yard", "zone": "dock",
         "class_name": "car", "direction": "in", "count": 1},
        {"bucket_start": "2026-12-06T13:30:00Z", "clock": "wall", "camera_id": "yard", "zone": "road",
         "class_name": "car", "direction": "in", "count": 1},
    ]
    assert main(["report", str(path), "--format", "json", "--bucket", "1d"]) == 0
    out, _ = capsys.readouterr()
    media = [row for row in json.loads(out) if row["clock"] == "media"]
    assert media[0] == {"bucket_start": 0, "clock": "media", "camera_id": None, "zone": "road",
                        "class_name": "car", "direction": "in", "count": 3}


def test_cli_on_an_empty_file_prints_the_header_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "events.csv"
    open_event_sink(path).close()
    assert main(["report", str(path)]) == 0
    assert capsys.readouterr().out == ",".join(REPORT_FIELDS) + "\n"


def _foreign_sqlite(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.csv"], r"missing\.csv: no such events file"),
        (lambda p: p.joinpath("e.txt").write_text("x"), ["e.txt"], r"e\.txt: unsupported extension '\.txt'"),
        (lambda p: p.joinpath("e.csv").write_text("a,b\n1,2\n"), ["e.csv"],
         r"e\.csv: not a yolov7-track events file \(header"),
        (lambda p: p.joinpath("e.jsonl").write_text('{"level": "info"}\n'), ["e.jsonl"],
         r"e\.jsonl: not a yolov7-track events file"),
        (lambda p: p.joinpath("e.db").write_text("hello " * 200), ["e.db"],
         r"e\.db: not a yolov7-track events file \(file is not a database\)"),
        (lambda p: _foreign_sqlite(p / "e.sqlite"), ["e.sqlite"], r"e\.sqlite: no 'events' or 'counts' table"),
        (lambda p: p.joinpath("e.csv").write_text(""), ["e.csv", "--bucket", "2h"], r"--bucket '2h': choose one of"),
        (lambda p: p.joinpath("e.csv").write_text(""), ["e.csv", "--format", "xml"], r"--format 'xml': choose one of"),
        (lambda p: p.joinpath("e.csv").write_text(""), ["e.csv", "--from", "noon"], r"--from 'noon': not an ISO 8601"),
        (lambda p: p.joinpath("e.csv").write_text(""), ["e.csv", "--from", "2026-12-06T14:00Z", "--to", "2026-12-06"],
         r"--from 2026-12-06T14:00Z is not before --to 2026-12-06"),
        (lambda p: p.joinpath("e.csv").write_text(""), ["e.csv", "--camera", ""], r"--camera: give a camera id"),
    ],
)
def test_cli_errors_are_one_line_naming_the_file_or_option(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, setup, args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    assert main(["report", *args]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("yolov7-track report: error: ")
    assert re.search(message, err), err


def test_cli_usage_error_is_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "EVENTS" in err
