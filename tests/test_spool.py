"""The durable spool of the event outputs (app/spool.py): order, durability, acks, threads,
files that are not ours; and the JSON body every output sends."""

from __future__ import annotations

import enum
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.spool import (
    CorruptSpoolError,
    ForeignSpoolError,
    InvalidEventError,
    OutputClosedError,
    OutputConfigError,
    OutputError,
    Spool,
    SpoolError,
    SpoolLockedError,
    SpoolOpenError,
    check_camera_id,
    event_json,
    spool_path,
)

REPO = Path(__file__).resolve().parents[1]


def test_fifo_order_peek_and_len(tmp_path):
    with Spool(tmp_path / "s.sqlite") as spool:
        ids = [spool.append(f"event {i}", key=f"k{i % 3}") for i in range(10)]
        assert ids == sorted(ids) and len(set(ids)) == 10
        assert len(spool) == 10
        head = spool.peek(4)
        assert [item.payload for item in head] == [f"event {i}".encode() for i in range(4)]
        assert [item.key for item in head] == ["k0", "k1", "k2", "k0"]
        # peek removes nothing; after_id skips what a sender already has in flight
        assert spool.peek(4) == head
        after = spool.peek(100, after_id=head[-1].id)
        assert [item.id for item in after] == ids[4:]
        assert spool.peek(0) == []
        spool.append(b"\x00\xffbinary")
        assert spool.peek(1, after_id=ids[-1])[0].payload == b"\x00\xffbinary"


def test_ack_semantics(tmp_path):
    with Spool(tmp_path / "s.sqlite") as spool:
        ids = [spool.append(str(i)) for i in range(6)]
        assert spool.ack(ids[2]) is True
        assert spool.ack(ids[2]) is False  # already gone
        assert [item.id for item in spool.peek(10)] == [ids[0], ids[1], ids[3], ids[4], ids[5]]
        assert spool.ack_through(ids[3]) == 3  # ids[0], ids[1], ids[3]
        assert [item.id for item in spool.peek(10)] == ids[4:]
        assert spool.ack_many([ids[5], ids[4], 10_000]) == 2
        assert len(spool) == 0 and spool.peek(10) == []
        # an id is never reused, even when the spool is empty
        assert spool.append("next") > ids[-1]


def test_items_survive_close_and_reopen_in_order(tmp_path):
    path = tmp_path / "deep" / "folder" / "s.sqlite"  # missing folders are created
    with Spool(path) as spool:
        ids = [spool.append(f"e{i}", key="t") for i in range(20)]
        spool.ack_through(ids[4])
    with Spool(path) as spool:
        assert len(spool) == 15
        assert [item.payload.decode() for item in spool.peek(100)] == [f"e{i}" for i in
                                                                       range(5, 20)]
        assert spool.append("more") > ids[-1]


def test_sigkill_after_appends_loses_nothing_and_releases_the_lock(tmp_path):
    """A writer killed with SIGKILL right after its appends returned: everything is there."""
    path = tmp_path / "s.sqlite"
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from app.spool import Spool
        spool = Spool({str(path)!r})
        ids = [spool.append("event %d" % i, key="cam") for i in range(300)]
        spool.ack_through(ids[99])
        print("READY", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "READY"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    with Spool(path) as spool:  # the dead writer's lock is gone with it
        assert len(spool) == 200
        assert [item.payload.decode() for item in spool.peek(1000)] == [
            f"event {i}" for i in range(100, 300)]


def test_thread_safety_concurrent_appends_and_acks(tmp_path):
    writers, per_writer = 4, 150
    with Spool(tmp_path / "s.sqlite") as spool:
        done = threading.Event()
        consumed: list[bytes] = []
        errors: list[BaseException] = []

        def write(writer: int) -> None:
            try:
                for i in range(per_writer):
                    spool.append(f"{writer}:{i}")
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        def consume() -> None:
            try:
                last = 0
                while not (done.is_set() and len(spool) == 0):
                    items = spool.peek(7)
                    if not items:
                        spool.wait_for_items(0.05)
                        continue
                    assert items[0].id > last
                    last = items[-1].id
                    consumed.extend(item.payload for item in items)
                    spool.ack_through(items[-1].id)
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        consumer = threading.Thread(target=consume)
        consumer.start()
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        consumer.join(timeout=30)
        assert not errors
        assert len(consumed) == writers * per_writer == len(set(consumed))
        for writer in range(writers):  # each writer's items come out in its own order
            mine = [int(p.split(b":")[1]) for p in consumed if p.startswith(f"{writer}:".encode())]
            assert mine == list(range(per_writer))
        assert len(spool) == 0


def test_wait_for_items_wakes_on_append(tmp_path):
    with Spool(tmp_path / "s.sqlite") as spool:
        assert spool.wait_for_items(0.05) is False
        timer = threading.Timer(0.1, spool.append, args=("late",))
        start = time.monotonic()
        timer.start()
        assert spool.wait_for_items(5.0) is True
        assert time.monotonic() - start < 2.0
        timer.join()
        first = spool.peek(1)[0].id
        assert spool.wait_for_items(0.01, after_id=first) is False


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _other_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (name TEXT)")
        connection.execute("INSERT INTO customers VALUES ('ada')")
    connection.close()


def _newer_spool(path: Path) -> None:
    Spool(path).close()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()


def _damaged_spool(path: Path) -> None:
    with Spool(path) as spool:
        for i in range(2000):
            spool.append("x" * 200)
    data = bytearray(path.read_bytes())
    data[4096 * 2: 4096 * 6] = b"\xa5" * (4096 * 4)  # smash pages past the header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make, error, words", [
    (lambda p: p.write_text("timestamp_s,frame_index\n1,2\n"), ForeignSpoolError,
     "not an SQLite database"),
    (_other_database, ForeignSpoolError, "customers"),
    (_newer_spool, CorruptSpoolError, "format version 99"),
    (_damaged_spool, CorruptSpoolError, "damaged"),
], ids=["text file", "other database", "newer version", "damaged"])
def test_files_that_are_not_a_usable_spool_are_refused_unchanged(tmp_path, make, error, words):
    path = tmp_path / "s.sqlite"
    make(path)
    before = _sha(path)
    with pytest.raises(error, match=words) as info:
        Spool(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, SpoolError) and isinstance(info.value, OutputError)
    assert isinstance(info.value, RuntimeError)
    assert _sha(path) == before
    # the refusal released the lock: the same process may try again
    with pytest.raises(error):
        Spool(path)


def test_empty_file_becomes_a_spool(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"")
    with Spool(path) as spool:
        spool.append("a")
    with Spool(path) as spool:
        assert len(spool) == 1


def test_second_user_of_a_file_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    first = Spool(path)
    with pytest.raises(SpoolLockedError, match="in use") as info:
        Spool(path)
    assert str(path) in str(info.value)
    first.append("still works")
    first.close()
    with Spool(path) as second:
        assert len(second) == 1


def test_cannot_open_names_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = blocker / "s.sqlite"  # its folder is a file
    with pytest.raises(SpoolOpenError, match="cannot open spool") as info:
        Spool(path)
    assert str(path) in str(info.value)


def test_closed_spool_raises_and_close_is_idempotent(tmp_path):
    spool = Spool(tmp_path / "s.sqlite")
    spool.close()
    spool.close()
    assert spool.closed
    for call in (lambda: spool.append("x"), lambda: spool.peek(1), lambda: spool.ack(1),
                 lambda: spool.ack_through(1)):
        with pytest.raises(OutputClosedError):
            call()
    assert spool.wait_for_items(1.0) is False  # returns at once


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "x\x00"])
def test_spool_name_must_be_a_plain_file_name(tmp_path, name):
    with pytest.raises(OutputConfigError, match="spool name"):
        spool_path(tmp_path, name)


class _Colour(str, enum.Enum):
    RED = "red"


@pytest.mark.parametrize("event, expected", [
    ({"zone": "road", "track_id": 3}, {"camera_id": "cam1", "zone": "road", "track_id": 3}),
    ({"camera_id": None, "zone": "z"}, {"camera_id": "cam1", "zone": "z"}),
    ({"camera_id": "cam1", "n": np.int64(5), "x": np.float32(0.5), "c": _Colour.RED},
     {"camera_id": "cam1", "n": 5, "x": 0.5, "c": "red"}),
])
def test_event_json_body(event, expected):
    body = event_json("cam1", event)
    assert json.loads(body) == expected
    assert list(json.loads(body))[0] == "camera_id"


@pytest.mark.parametrize("camera_id, event, words", [
    ("cam1", {"camera_id": "cam2"}, "camera_id 'cam2'"),
    ("cam1", {"x": float("nan")}, "cannot be sent as JSON"),
    ("cam1", {"x": object()}, "cannot be sent as JSON"),
    ("cam1", ["not", "a", "dict"], "mapping"),
    ("", {}, "non-empty"),
    ("a/b", {}, "'/'"),
    ("a+", {}, "'\\+'"),
    ("#", {}, "'#'"),
    (7, {}, "non-empty string"),
])
def test_event_json_refuses_bad_input(camera_id, event, words):
    with pytest.raises(InvalidEventError, match=words) as info:
        event_json(camera_id, event)
    assert isinstance(info.value, ValueError)


def test_check_camera_id_accepts_plain_names():
    assert check_camera_id("front-door_2.cam") == "front-door_2.cam"
