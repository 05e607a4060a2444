"""Prometheus metrics and the /metrics + /status HTTP server (app.metrics)."""

from __future__ import annotations

import json
import math
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.counting import Direction
from app.metrics import MetricsServer, ServiceMetrics


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _feed(metrics: ServiceMetrics) -> None:
    for latency_s in (0.02, 0.04, 0.3):
        metrics.frame_processed("gate", latency_s)
    metrics.frame_processed("yard", 1.5)
    metrics.set_fps("gate", 24.5)
    metrics.set_fps("yard", 3.0)
    metrics.frame_dropped("gate")
    metrics.frame_dropped("gate", n=4)
    metrics.reconnect("yard")
    metrics.count_event("gate", "road", "car", "in")
    metrics.count_event("gate", "road", "car", Direction.IN)
    metrics.count_event("gate", "road", "truck", "out")
    metrics.count_event("yard", "dock", "person", Direction.ENTER)
    metrics.set_camera_state("gate", "starting")
    metrics.set_camera_state("gate", "running")
    metrics.set_camera_state("yard", "reconnecting")
    for size in (1, 3, 3, 8):
        metrics.observe_batch(size)


def test_exposition_parses_and_holds_the_expected_values() -> None:
    metrics = ServiceMetrics()
    _feed(metrics)
    samples = _samples(metrics.exposition().decode("utf-8"))
    p = "yolov7_track_"
    assert _value(samples, f"{p}frames_total", camera="gate") == 3
    assert _value(samples, f"{p}frames_total", camera="yard") == 1
    assert _value(samples, f"{p}frame_latency_seconds_count", camera="gate") == 3
    assert math.isclose(_value(samples, f"{p}frame_latency_seconds_sum", camera="gate"), 0.36)
    assert _value(samples, f"{p}frame_latency_seconds_bucket", camera="gate", le="0.05") == 2
    assert _value(samples, f"{p}frame_latency_seconds_bucket", camera="gate", le="0.3") == 3
    assert _value(samples, f"{p}frame_latency_seconds_bucket", camera="yard", le="1.0") == 0
    assert _value(samples, f"{p}frame_latency_seconds_bucket", camera="yard", le="+Inf") == 1
    assert _value(samples, f"{p}frames_per_second", camera="gate") == 24.5
    assert _value(samples, f"{p}frames_dropped_total", camera="gate") == 5
    assert _value(samples, f"{p}reconnects_total", camera="yard") == 1
    assert _value(samples, f"{p}reconnects_total", camera="gate") is None  # never reconnected
    events = f"{p}count_events_total"
    assert _value(samples, events, camera="gate", zone="road", direction="in", **{"class": "car"}) == 2
    assert _value(samples, events, camera="gate", zone="road", direction="out", **{"class": "truck"}) == 1
    assert _value(samples, events, camera="yard", zone="dock", direction="enter", **{"class": "person"}) == 1
    assert _value(samples, f"{p}camera_state", camera="gate", state="running") == 1
    assert _value(samples, f"{p}camera_state", camera="gate", state="starting") == 0
    assert _value(samples, f"{p}camera_state", camera="yard", state="reconnecting") == 1
    assert _value(samples, f"{p}detector_batch_size_count") == 4
    assert _value(samples, f"{p}detector_batch_size_sum") == 15
    assert _value(samples, f"{p}detector_batch_size_bucket", le="4.0") == 3
    families = {family.name: family.type for family in text_string_to_metric_families(
        metrics.exposition().decode("utf-8")) if not family.name.endswith("_created")}
    assert families == {
        f"{p}frames": "counter", f"{p}frame_latency_seconds": "histogram", f"{p}frames_per_second": "gauge",
        f"{p}frames_dropped": "counter", f"{p}reconnects": "counter", f"{p}count_events": "counter",
        f"{p}camera_state": "gauge", f"{p}detector_batch_size": "histogram",
    }


def test_each_instance_has_its_own_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.frame_processed("gate", 0.1)
    assert first.registry is not second.registry
    assert _value(_samples(second.exposition().decode()), "yolov7_track_frames_total", camera="gate") is None
    shared = CollectorRegistry()
    assert ServiceMetrics(shared).registry is shared
    with pytest.raises(ValueError):  # prometheus_client refuses duplicate names in one registry
        ServiceMetrics(shared)


def test_camera_removed_drops_every_series_of_that_camera_only() -> None:
    metrics = ServiceMetrics()
    _feed(metrics)
    metrics.camera_removed("gate")
    metrics.camera_removed("never-seen")  # nothing to do
    samples = _samples(metrics.exposition().decode("utf-8"))
    cameras = {dict(labels).get("camera") for (_, labels) in samples}
    assert "gate" not in cameras
    assert "yard" in cameras
    assert _value(samples, "yolov7_track_frames_total", camera="yard") == 1
    assert _value(samples, "yolov7_track_detector_batch_size_count") == 4  # no camera label: kept
    metrics.frame_processed("gate", 0.05)  # a camera that comes back starts from zero
    assert _value(_samples(metrics.exposition().decode()), "yolov7_track_frames_total", camera="gate") == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.frame_processed("", 0.1), "camera"),
        (lambda m: m.frame_processed("gate", -0.1), "latency_s"),
        (lambda m: m.frame_processed("gate", math.nan), "latency_s"),
        (lambda m: m.set_fps("gate", math.inf), "fps"),
        (lambda m: m.frame_dropped("gate", -1), "n must"),
        (lambda m: m.set_camera_state("gate", ""), "state"),
        (lambda m: m.observe_batch(0), "batch size"),
        (lambda m: m.count_event(None, "road", "car", "in"), "camera"),
    ],
)
def test_bad_values_are_refused(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ServiceMetrics())


def test_server_serves_metrics_status_and_404() -> None:
    metrics = ServiceMetrics()
    _feed(metrics)
    status = {"cameras": {"gate": {"state": "running", "fps": 24.5}, "yard": {"fps": math.nan}}, "uptime_s": 3}
    with MetricsServer(metrics, lambda: status) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        code, content_type, body = _get(server.url + "/metrics")
        assert code == 200
        assert content_type.startswith("text/plain") and "version=" in content_type
        samples = _samples(body.decode("utf-8"))
        assert _value(samples, "yolov7_track_frames_total", camera="gate") == 3
        code, content_type, body = _get(server.url + "/status?pretty=0")
        assert code == 200 and content_type.startswith("application/json")
        assert json.loads(body) == {"cameras": {"gate": {"state": "running", "fps": 24.5},
                                                "yard": {"fps": None}}, "uptime_s": 3}
        for path in ("/", "/metricsx", "/status/extra"):
            assert _get(server.url + path)[0] == 404
        metrics.count_event("gate", "road", "bus", "in")  # served live, not a snapshot
        samples = _samples(_get(server.url + "/metrics")[2].decode("utf-8"))
        assert _value(samples, "yolov7_track_count_events_total", camera="gate", zone="road",
                      direction="in", **{"class": "bus"}) == 1
    assert server.closed


def test_a_failing_status_provider_gives_500_and_the_server_keeps_serving(caplog) -> None:
    def broken() -> dict:
        raise RuntimeError("camera table locked")

    with MetricsServer(ServiceMetrics(), broken) as server:
        code, _, body = _get(server.url + "/status")
        assert code == 500
        assert json.loads(body) == {"error": "RuntimeError: camera table locked"}
        assert _get(server.url + "/metrics")[0] == 200
    assert "status_provider failed" in caplog.text


def test_port_zero_picks_a_free_port_and_close_releases_it() -> None:
    first = MetricsServer(ServiceMetrics(), dict)
    second = MetricsServer(ServiceMetrics(), dict)
    try:
        assert first.port > 0 and second.port > 0 and first.port != second.port
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            MetricsServer(ServiceMetrics(), dict, port=first.port)
    finally:
        second.close()
    port = first.port
    first.close()
    first.close()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", port))  # free again
    finally:
        probe.close()
    with MetricsServer(ServiceMetrics(), dict, port=port) as again:
        assert again.port == port
        assert _get(again.url + "/status")[2] == b"{}"


def test_leaving_the_block_with_an_exception_closes_the_server() -> None:
    with pytest.raises(KeyError, match="original"):
        with MetricsServer(ServiceMetrics(), dict) as server:
            raise KeyError("original")
    assert server.closed
