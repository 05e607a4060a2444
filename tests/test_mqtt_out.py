"""The MQTT output (app/mqtt_out.py) against a real Mosquitto broker (tests/mqtt_broker.py) and
a real paho subscriber: topics, QoS, order, retained values, broker outages, restarts,
refused credentials, and the message when paho-mqtt is missing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from app.mqtt_out import (
    PAHO_MISSING_MESSAGE,
    MqttConfig,
    MqttPublisher,
    MqttRefusedError,
    MqttUnavailableError,
)
from app.spool import InvalidEventError, OutputClosedError, OutputConfigError, OutputError
from mqtt_broker import MosquittoBroker, Subscriber, free_port, wait_until

PREFIX = "test-y7"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def broker(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as running:
        yield running


def make_config(tmp_path: Path, port: int, **overrides) -> MqttConfig:
    settings = dict(host="127.0.0.1", port=port, topic_prefix=PREFIX,
                    spool_dir=tmp_path / "spool", reconnect_min_delay_s=0.1,
                    reconnect_max_delay_s=0.5, keepalive_s=10)
    settings.update(overrides)
    return MqttConfig(**settings)


def events_of(messages, camera_id: str) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages
            if m.topic == f"{PREFIX}/{camera_id}/events"]


def first_occurrences(sequence: list[int]) -> list[int]:
    seen: set[int] = set()
    return [x for x in sequence if not (x in seen or seen.add(x))]


def test_events_arrive_in_order_at_qos1_on_each_cameras_topic(tmp_path, broker):
    subscriber = Subscriber(broker.port, [f"{PREFIX}/#"])
    publisher = MqttPublisher(make_config(tmp_path, broker.port))
    try:
        assert wait_until(lambda: publisher.connected, 10)
        for seq in range(60):
            camera = "cam1" if seq % 3 else "cam-2"
            publisher.publish_event(camera, {"seq": seq, "zone": "road", "direction": "in"})
        assert publisher.flush(10) and publisher.pending == 0
        assert wait_until(lambda: len(events_of(subscriber.snapshot(), "cam1")) == 40, 10)
        assert wait_until(lambda: len(events_of(subscriber.snapshot(), "cam-2")) == 20, 10)
        messages = subscriber.snapshot()
        assert events_of(messages, "cam1") == [s for s in range(60) if s % 3]
        assert events_of(messages, "cam-2") == [s for s in range(60) if not s % 3]
        events = [m for m in messages if m.topic.endswith("/events")]
        # delivered QoS is min(publish, subscribe) = 1: published at QoS 1; never retained
        assert {m.qos for m in events} == {1} and not any(m.retain for m in events)
        body = json.loads(events[0].payload)
        assert body == {"camera_id": "cam-2", "seq": 0, "zone": "road", "direction": "in"}
        assert (f"{PREFIX}/available", b"online") in [(m.topic, m.payload) for m in messages]
    finally:
        publisher.close(timeout_s=2)
        subscriber.close()
    assert publisher.pending == 0
    late = Subscriber(broker.port, [f"{PREFIX}/available"], client_id="late")
    try:  # close() left the retained "offline"
        assert wait_until(lambda: late.snapshot(), 5)
        assert late.snapshot()[-1][1:] == (b"offline", 1, True)
    finally:
        late.close()


def test_counts_are_retained_latest_wins_for_a_later_subscriber(tmp_path, broker):
    publisher = MqttPublisher(make_config(tmp_path, broker.port))
    try:
        assert wait_until(lambda: publisher.connected, 10)
        publisher.publish_counts("cam1", {"road": {"in": 1, "out": 0}})
        publisher.publish_counts("cam1", {"road": {"in": 2, "out": 1}})
        publisher.publish_counts("cam2", {"door": {"enter": 5}})
        assert publisher.flush(10)
        subscriber = Subscriber(broker.port, [f"{PREFIX}/+/counts", f"{PREFIX}/available"],
                                client_id="later")
        try:
            assert wait_until(lambda: len(subscriber.snapshot()) >= 3, 5)
            got = {m.topic: (json.loads(m.payload) if m.topic.endswith("counts") else m.payload,
                             m.retain) for m in subscriber.snapshot()}
            assert got == {
                f"{PREFIX}/cam1/counts": ({"road": {"in": 2, "out": 1}}, True),
                f"{PREFIX}/cam2/counts": ({"door": {"enter": 5}}, True),
                f"{PREFIX}/available": (b"online", True),
            }
        finally:
            subscriber.close()
    finally:
        publisher.close(timeout_s=2)


def test_counts_while_broker_is_down_only_the_latest_is_sent(tmp_path):
    port = free_port()
    publisher = MqttPublisher(make_config(tmp_path, port))
    broker = MosquittoBroker(tmp_path / "broker", port=port)
    try:
        for value in range(5):
            publisher.publish_counts("cam1", {"road": {"in": value}})
        assert not publisher.connected
        broker.start()
        subscriber = Subscriber(port, [f"{PREFIX}/cam1/counts"])
        try:
            assert publisher.flush(10)
            assert wait_until(lambda: subscriber.snapshot(), 5)
            time.sleep(0.2)
            assert [json.loads(m.payload) for m in subscriber.snapshot()] == [
                {"road": {"in": 4}}]
        finally:
            subscriber.close()
    finally:
        publisher.close(timeout_s=1)
        broker.kill()


def stream_through_outage(publisher: MqttPublisher, go_down, come_up, ready=lambda: True,
                          down_s: float = 2.0, before: int = 150, after: int = 150
                          ) -> tuple[int, int]:
    """Publish ``before`` events, call ``go_down``, keep publishing for ``down_s`` seconds, call
    ``come_up``, keep publishing until ``ready()`` (10 s at most), then ``after`` more events.

    Timed by the clock, not by a count, so a fast machine cannot end the stream early.
    Returns the number of events and the ``seq`` of the first one published once ready.
    """
    seq = 0

    def publish() -> None:
        nonlocal seq
        publisher.publish_event("cam1", {"seq": seq})
        seq += 1
        time.sleep(0.004)

    for _ in range(before):
        publish()
    go_down()
    down_at = time.monotonic()
    while time.monotonic() - down_at < down_s:
        publish()
    come_up()
    up_at = time.monotonic()
    while not ready() and time.monotonic() - up_at < 10:
        publish()
    assert ready(), "not ready 10 s after the broker came back"
    first_ready = seq
    for _ in range(after):
        publish()
    return seq, first_ready


def test_broker_restart_mid_stream_delivers_every_event_in_order(tmp_path):
    """The broker goes down for 2 s (SIGTERM, as for a restart) while events keep coming.

    The broker persists its state, as a production one does, so that the subscriber's
    persistent session (and what the broker already acknowledged for it) survives the restart:
    then every event must reach the subscriber, first occurrences in order (duplicates are
    what at-least-once allows around the reconnect).
    """
    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    broker.start()
    subscriber = Subscriber(broker.port, [f"{PREFIX}/+/events"], persistent=True)
    publisher = MqttPublisher(make_config(tmp_path, broker.port))
    try:
        assert wait_until(lambda: publisher.connected, 10)
        count, _ = stream_through_outage(publisher, broker.stop, broker.start)
        assert publisher.flush(15), f"{publisher.pending} event(s) still pending"
        assert wait_until(lambda: set(events_of(subscriber.snapshot(), "cam1"))
                          >= set(range(count)), 10)
        received = events_of(subscriber.snapshot(), "cam1")
        assert first_occurrences(received) == list(range(count))
        assert publisher.pending == 0 and publisher.connected and publisher.failure is None
    finally:
        publisher.close(timeout_s=2)
        subscriber.close()
        broker.kill()


def test_broker_killed_mid_stream_publisher_recovers_and_keeps_order(tmp_path, broker):
    """SIGKILL, no broker persistence: what the dead broker had acknowledged but not yet
    forwarded is gone with it (the broker had taken it over), and the subscriber's session
    too. The publisher must still reconnect, drain its spool, and every event appended after
    the subscriber is back must arrive; the first occurrences are in order."""
    subscriber = Subscriber(broker.port, [f"{PREFIX}/+/events"])
    publisher = MqttPublisher(make_config(tmp_path, broker.port))
    try:
        assert wait_until(lambda: publisher.connected, 10)

        def go_down() -> None:
            broker.kill()
            assert wait_until(lambda: not subscriber.subscribed.is_set(), 5)

        count, back = stream_through_outage(publisher, go_down, broker.start,
                                            ready=subscriber.subscribed.is_set)
        assert publisher.flush(15), f"{publisher.pending} event(s) still pending"
        assert wait_until(lambda: set(events_of(subscriber.snapshot(), "cam1"))
                          >= set(range(back, count)), 10)
        received = events_of(subscriber.snapshot(), "cam1")
        assert first_occurrences(received) == sorted(set(received))
        assert publisher.pending == 0 and publisher.failure is None
    finally:
        publisher.close(timeout_s=2)
        subscriber.close()


def test_events_spooled_while_broker_is_down_survive_close_and_a_new_publisher(tmp_path):
    port = free_port()  # nothing listens yet
    config = make_config(tmp_path, port)
    publisher = MqttPublisher(config)
    for seq in range(30):
        publisher.publish_event("cam1", {"seq": seq})
    assert publisher.pending == 30 and not publisher.connected
    started = time.monotonic()
    publisher.close(timeout_s=0.3)
    assert time.monotonic() - started < 3
    with pytest.raises(OutputClosedError):
        publisher.publish_event("cam1", {"seq": 99})
    assert config.spool_path.exists()

    broker = MosquittoBroker(tmp_path / "broker", port=port)
    broker.start()
    subscriber = Subscriber(port, [f"{PREFIX}/+/events"])
    second = MqttPublisher(config)
    try:
        assert second.pending == 30
        second.publish_event("cam1", {"seq": 30})
        assert second.flush(10) and second.pending == 0
        assert wait_until(lambda: len(events_of(subscriber.snapshot(), "cam1")) >= 31, 10)
        assert events_of(subscriber.snapshot(), "cam1") == list(range(31))
    finally:
        second.close(timeout_s=2)
        subscriber.close()
        broker.kill()


def test_last_will_says_offline_when_the_publisher_process_dies(tmp_path, broker):
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from app.mqtt_out import MqttConfig, MqttPublisher
        publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port={broker.port},
                                             topic_prefix={PREFIX!r},
                                             spool_dir={str(tmp_path / "child")!r}))
        while not publisher.connected:
            time.sleep(0.01)
        publisher.publish_event("cam1", {{"seq": 0}})
        publisher.flush(5)
        print("READY", flush=True)
        time.sleep(60)
    """)
    subscriber = Subscriber(broker.port, [f"{PREFIX}/available"])
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "READY"
        assert wait_until(lambda: (b"online" in [m.payload for m in subscriber.snapshot()]), 5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert wait_until(lambda: subscriber.snapshot()[-1].payload == b"offline", 5)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        subscriber.close()


def test_refused_credentials_become_a_failure_instead_of_a_retry_loop(tmp_path):
    broker = MosquittoBroker(tmp_path / "broker", users={"counter": "s3cret"})
    broker.start()
    publisher = MqttPublisher(make_config(tmp_path, broker.port, username="counter",
                                          password="wrong"))
    try:
        assert wait_until(lambda: publisher.failure is not None, 5)
        failure = publisher.failure
        assert isinstance(failure, MqttRefusedError) and isinstance(failure, OutputError)
        assert "refused" in str(failure) and str(broker.port) in str(failure)
        with pytest.raises(MqttRefusedError):
            publisher.publish_event("cam1", {"seq": 0})
        attempts = broker.log_text().count("New connection from")
        time.sleep(1.5)  # the backoff is 0.1..0.5 s: a retry loop would have reconnected
        assert broker.log_text().count("New connection from") == attempts
        assert not publisher.connected
    finally:
        publisher.close(timeout_s=0.5)
    good = MqttPublisher(make_config(tmp_path, broker.port, username="counter",
                                     password="s3cret", spool_name="good"))
    try:
        assert wait_until(lambda: good.connected, 5) and good.failure is None
    finally:
        good.close(timeout_s=1)
        broker.kill()


def test_missing_paho_gives_one_line_install_hint(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "paho" or n.startswith("paho.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "paho", None)
    config = make_config(tmp_path, 1883)  # the config needs no paho
    with pytest.raises(MqttUnavailableError) as info:
        MqttPublisher(config)
    assert str(info.value) == PAHO_MISSING_MESSAGE
    assert str(info.value) == "MQTT output needs paho-mqtt: pip install 'yolov7-track[mqtt]'"
    assert isinstance(info.value, ImportError) and isinstance(info.value, OutputError)
    assert not config.spool_path.exists()  # nothing was opened


def test_publish_refuses_bad_camera_ids_and_events(tmp_path):
    publisher = MqttPublisher(make_config(tmp_path, free_port()))
    try:
        for camera_id in ("", "a/b", "a#", "+"):
            with pytest.raises(InvalidEventError):
                publisher.publish_event(camera_id, {"seq": 0})
            with pytest.raises(InvalidEventError):
                publisher.publish_counts(camera_id, {})
        with pytest.raises(InvalidEventError, match="JSON"):
            publisher.publish_event("cam1", {"x": float("inf")})
        assert publisher.pending == 0
    finally:
        publisher.close(timeout_s=0)


@pytest.mark.parametrize("overrides, words", [
    ({"host": ""}, "host"),
    ({"host": "mqtt://broker"}, "without a scheme"),
    ({"port": 0}, "port"),
    ({"port": 70000}, "port"),
    ({"topic_prefix": "a/#"}, "'#'"),
    ({"topic_prefix": "/lead"}, "empty level"),
    ({"topic_prefix": ""}, "non-empty"),
    ({"password": "x"}, "username"),
    ({"keepalive_s": 0}, "keepalive_s"),
    ({"reconnect_min_delay_s": 2.0, "reconnect_max_delay_s": 1.0}, "at least"),
    ({"reconnect_max_delay_s": float("inf")}, "reconnect_max_delay_s"),
    ({"max_in_flight": 0}, "max_in_flight"),
    ({"spool_name": "../x"}, "spool name"),
])
def test_config_is_validated_with_a_message_naming_the_setting(tmp_path, overrides, words):
    with pytest.raises(OutputConfigError, match=words) as info:
        settings = dict(overrides)
        make_config(tmp_path, settings.pop("port", 1883), **settings)
    assert isinstance(info.value, ValueError)


def test_config_topics_qos_and_repr(tmp_path):
    config = make_config(tmp_path, 1883, username="u", password="hunter2")
    assert config.qos == 1
    assert config.events_topic("cam1") == f"{PREFIX}/cam1/events"
    assert config.counts_topic("cam1") == f"{PREFIX}/cam1/counts"
    assert config.availability_topic == f"{PREFIX}/available"
    assert config.spool_path == tmp_path / "spool" / "mqtt.sqlite"
    assert "hunter2" not in repr(config)
    assert MqttConfig(host="h", spool_dir=tmp_path).topic_prefix == "yolov7-track"


def test_publishers_from_threads_keep_each_threads_order(tmp_path, broker):
    subscriber = Subscriber(broker.port, [f"{PREFIX}/+/events"])
    publisher = MqttPublisher(make_config(tmp_path, broker.port))
    try:
        def produce(camera: str) -> None:
            for seq in range(40):
                publisher.publish_event(camera, {"seq": seq})

        threads = [threading.Thread(target=produce, args=(f"cam{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert publisher.flush(10)
        for i in range(3):
            assert wait_until(lambda: len(events_of(subscriber.snapshot(), f"cam{i}")) >= 40, 5)
            assert events_of(subscriber.snapshot(), f"cam{i}") == list(range(40))
    finally:
        publisher.close(timeout_s=2)
        subscriber.close()
