"""Prometheus metrics of a running service, and a small HTTP server for ``/metrics`` and ``/status``.

:class:`ServiceMetrics` owns one ``prometheus_client.CollectorRegistry`` per instance (never the
process-global one), so two services, or two tests, in one process never share a series. Every
series except the batch-size histogram is labelled by ``camera``; :meth:`ServiceMetrics.camera_removed`
drops all of a camera's series, so a removed camera stops being exported instead of showing its
last values forever.

Metric names (``yolov7_track_`` prefix, units in the names as Prometheus recommends):

=========================================== ========= ==================================================
name                                        type      labels / meaning
=========================================== ========= ==================================================
``yolov7_track_frames_total``               counter   ``camera``: frames output by the pipeline
``yolov7_track_frame_latency_seconds``      histogram ``camera``: capture -> output latency, seconds
``yolov7_track_frames_per_second``          gauge     ``camera``: output frame rate, frames/s
``yolov7_track_frames_dropped_total``       counter   ``camera``: frames dropped (queue full, late)
``yolov7_track_reconnects_total``           counter   ``camera``: reconnections of the source
``yolov7_track_count_events_total``         counter   ``camera``, ``zone``, ``class``, ``direction``:
                                                      count events (line crossings, zone entries/exits)
``yolov7_track_camera_state``               gauge     ``camera``, ``state``: 1 for the camera's current
                                                      state, 0 for the other states it has been in
``yolov7_track_detector_batch_size``        histogram no label: frames per detector batch
=========================================== ========= ==================================================

(the exposition also shows the counters' ``_created`` samples and the histograms'
``_bucket``/``_sum``/``_count`` samples, as prometheus_client writes them).

:class:`MetricsServer` serves, on its own threads (stdlib ``ThreadingHTTPServer``):

- ``GET /metrics``: the registry in the Prometheus text format (``generate_latest``);
- ``GET /status``: the JSON of ``status_provider()`` (non-finite floats become ``null``; a
  provider that raises gives ``500`` with ``{"error": ...}``, and is logged);
- anything else: ``404``.

Thread-safety: every method of :class:`ServiceMetrics` may be called from any thread (the
prometheus_client metrics are thread-safe; the label sets remembered for removal are kept under a
lock). A series updated after :meth:`ServiceMetrics.camera_removed` for its camera is created
again. ``status_provider`` is called on the server's request threads.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "LATENCY_BUCKETS_S",
    "METRIC_PREFIX",
    "MetricsServer",
    "ServiceMetrics",
]

logger = logging.getLogger(__name__)

METRIC_PREFIX = "yolov7_track"
#: Histogram buckets of the capture -> output latency, seconds: from one fast frame (10 ms) to a
#: stalled pipeline (10 s).
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)
#: Histogram buckets of the detector batch size, frames.
BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)


class ServiceMetrics:
    """The service's metrics in a registry of their own (names in the module docstring).

    Args:
        registry: where to register the metrics; ``None`` (the default) creates a new
            ``CollectorRegistry``. Passing one that already holds these names raises
            ``ValueError`` (from prometheus_client).

    All methods are thread-safe. Label values are used as given; ``camera`` must be a non-empty
    string.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        p = METRIC_PREFIX
        self._frames = Counter(f"{p}_frames", "Frames output by the pipeline.", ["camera"],
                               registry=self.registry)
        self._latency = Histogram(f"{p}_frame_latency_seconds", "Capture to output latency of a frame, seconds.",
                                  ["camera"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._fps = Gauge(f"{p}_frames_per_second", "Output frame rate, frames per second.", ["camera"],
                          registry=self.registry)
        self._dropped = Counter(f"{p}_frames_dropped", "Frames dropped before output.", ["camera"],
                                registry=self.registry)
        self._reconnects = Counter(f"{p}_reconnects", "Reconnections of the camera's source.", ["camera"],
                                   registry=self.registry)
        self._events = Counter(f"{p}_count_events", "Count events (line crossings, zone entries and exits).",
                               ["camera", "zone", "class", "direction"], registry=self.registry)
        self._state = Gauge(f"{p}_camera_state", "1 for the camera's current state, 0 for its other states.",
                            ["camera", "state"], registry=self.registry)
        self._batch = Histogram(f"{p}_detector_batch_size", "Frames per detector batch.",
                                buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self._lock = threading.Lock()
        # camera -> label tuples of its multi-label series, for camera_removed()
        self._event_labels: dict[str, set[tuple[str, str, str, str]]] = {}
        self._states: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ per frame
    def frame_processed(self, camera: str, latency_s: float) -> None:
        """One frame of ``camera`` was output, ``latency_s`` seconds after its capture.

        Raises:
            ValueError: empty ``camera``, or ``latency_s`` negative or not finite.
        """
        _check_camera(camera)
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"latency_s must be finite and >= 0, got {latency_s}")
        self._frames.labels(camera=camera).inc()
        self._latency.labels(camera=camera).observe(latency_s)

    def set_fps(self, camera: str, fps: float) -> None:
        """The output frame rate of ``camera`` is now ``fps`` frames per second.

        Raises:
            ValueError: empty ``camera``, or ``fps`` negative or not finite.
        """
        _check_camera(camera)
        if not (math.isfinite(fps) and fps >= 0):
            raise ValueError(f"fps must be finite and >= 0, got {fps}")
        self._fps.labels(camera=camera).set(fps)

    def frame_dropped(self, camera: str, n: int = 1) -> None:
        """``n`` frames of ``camera`` were dropped.

        Raises:
            ValueError: empty ``camera``, or ``n`` negative.
        """
        _check_camera(camera)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self._dropped.labels(camera=camera).inc(n)

    def reconnect(self, camera: str) -> None:
        """The source of ``camera`` was reconnected (call once per successful reconnection).

        Raises:
            ValueError: empty ``camera``.
        """
        _check_camera(camera)
        self._reconnects.labels(camera=camera).inc()

    def count_event(self, camera: str, zone: str, class_name: str, direction: str) -> None:
        """One count event of ``camera`` on line or zone ``zone`` (``direction``: ``in``,
        ``out``, ``enter``, ``exit``; a :class:`~app.counting.Direction` is written as its value).

        Raises:
            ValueError: empty ``camera``.
        """
        _check_camera(camera)
        labels = (camera, str(zone), str(class_name), str(getattr(direction, "value", direction)))
        with self._lock:
            self._event_labels.setdefault(camera, set()).add(labels)
            self._events.labels(*labels).inc()

    def set_camera_state(self, camera: str, state: str) -> None:
        """``camera`` is now in ``state`` (e.g. ``starting``, ``running``, ``reconnecting``,
        ``stopped``, ``failed``: the service chooses the names): its series for ``state`` is set
        to 1 and those of the states it was in before to 0.

        Raises:
            ValueError: empty ``camera`` or ``state``.
        """
        _check_camera(camera)
        if not isinstance(state, str) or not state:
            raise ValueError(f"state must be a non-empty string, got {state!r}")
        with self._lock:
            known = self._states.setdefault(camera, set())
            known.add(state)
            for name in known:
                self._state.labels(camera=camera, state=name).set(1 if name == state else 0)

    # ------------------------------------------------------------------ detector
    def observe_batch(self, size: int) -> None:
        """The detector ran one batch of ``size`` frames.

        Raises:
            ValueError: ``size`` < 1.
        """
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        self._batch.observe(size)

    # ------------------------------------------------------------------ cameras
    def camera_removed(self, camera: str) -> None:
        """Drop every series of ``camera`` (nothing happens for a camera never seen)."""
        with self._lock:
            event_labels = self._event_labels.pop(camera, set())
            states = self._states.pop(camera, set())
            for metric in (self._frames, self._latency, self._fps, self._dropped, self._reconnects):
                _remove(metric, camera)
            for labels in event_labels:
                _remove(self._events, *labels)
            for state in states:
                _remove(self._state, camera, state)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what ``GET /metrics`` returns)."""
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` and ``GET /status`` over HTTP on a background thread (see the module
    docstring). Starts listening in the constructor; a context manager.

    Args:
        metrics: the metrics to serve.
        status_provider: called for each ``GET /status``, on a request thread; returns a
            JSON-serialisable ``dict`` (other objects are written with ``str``).
        host: address to listen on (``"127.0.0.1"``: this machine only; ``"0.0.0.0"`` or
            ``"::"`` for every interface).
        port: TCP port; ``0`` picks a free one (read :attr:`port`).

    Raises:
        OSError: the address cannot be bound (port in use, permission); the message names it.
    """

    #: Seconds a request may take to arrive before its connection is dropped.
    REQUEST_TIMEOUT_S = 10.0

    def __init__(
        self,
        metrics: ServiceMetrics,
        status_provider: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.metrics = metrics
        self.status_provider = status_provider
        handler = _handler_class(self)
        server_type = _IPv6Server if ":" in host else _IPv4Server
        try:
            self._server = server_type((host, port), handler)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics server: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self._closed = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"metrics-http:{self.port}", daemon=True)
        self._thread.start()
        logger.info("metrics server listening on %s", self.url)

    @property
    def port(self) -> int:
        """The TCP port listened on (the one picked when ``port=0`` was given)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop serving, release the port and join the server thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._server.shutdown()
        finally:
            self._server.server_close()
            self._thread.join(timeout=10.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # never hide the exception already in flight
            self.close()
        except Exception:
            logger.exception("closing the metrics server failed")

    def _status_json(self) -> tuple[int, bytes]:
        try:
            status = self.status_provider()
            body = json.dumps(_finite(status), default=str, allow_nan=False)
        except Exception as exc:
            logger.exception("metrics server: status_provider failed")
            return 500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode("utf-8")
        return 200, body.encode("utf-8")


# ------------------------------------------------------------------------------ helpers
class _IPv4Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


def _handler_class(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = MetricsServer.REQUEST_TIMEOUT_S
        server_version = "yolov7-track-metrics"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, server.metrics.exposition())
            elif path == "/status":
                code, body = server._status_json()
                self._reply(code, "application/json; charset=utf-8", body)
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /status\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


def _check_camera(camera: str) -> None:
    if not isinstance(camera, str) or not camera:
        raise ValueError(f"camera must be a non-empty string, got {camera!r}")


def _remove(metric: Any, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:  # never created for this camera
        pass


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None`` (JSON has none)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value

