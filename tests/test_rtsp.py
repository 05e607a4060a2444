"""Live RTSP sources against a real RTSP server on 127.0.0.1 (GStreamer, see rtsp_server.py).

The server runs in its own process so the tests can kill it (camera gone), stop it with
SIGSTOP (camera frozen: TCP connection open, no data) and start it again on the same port.
If the GStreamer packages are missing the tests FAIL with the package to install: CI
installs them (``.ci/run``), and a skipped reconnect test would hide a broken camera path.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from rtsp_server import RtspServerUnavailableError, RtspTestServer, wait_until

from app.frames import Frame
from app.sources import LiveSource, SourceConfig, SourceError, open_source

pytestmark = pytest.mark.timeout(60)

WIDTH, HEIGHT, FPS = 320, 240, 25
# A quick first retry keeps the tests short; the stall timeout stays at its default (5 s).
FAST_RETRY = dict(reconnect_initial_s=0.2, reconnect_max_s=1.0)


@pytest.fixture
def rtsp_server():
    server = RtspTestServer(width=WIDTH, height=HEIGHT, fps=FPS)
    problem = None
    try:
        server.start()
    except RtspServerUnavailableError as error:
        problem = str(error)
    if problem is not None:
        server.kill()
        pytest.fail(f"RTSP test server unavailable: {problem}", pytrace=False)
    yield server
    server.kill()


@dataclass
class Collector:
    """Iterates a source in a thread, as the pipeline's capture thread would."""

    source: LiveSource
    frames: list[Frame] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "Collector":
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            for frame in self.source:
                # Keep one image per 25 frames: enough to check pixels, small in memory.
                if frame.index % 25:
                    frame = Frame(frame.index, frame.timestamp_s, frame.image[:1, :1], frame.source)
                self.frames.append(frame)
                self.arrivals_s.append(time.monotonic())
        except BaseException as error:  # handed to the test thread
            self.error = error
        finally:
            self.done.set()

    def wait_for(self, count: int, timeout_s: float) -> None:
        ok = wait_until(lambda: len(self.frames) >= count or self.done.is_set(), timeout_s)
        assert self.error is None, f"iteration failed: {self.error!r}"
        assert ok and len(self.frames) >= count, (
            f"only {len(self.frames)} of {count} frames within {timeout_s} s; "
            f"stats: {self.source.stats}")

    def stop(self) -> None:
        self.source.close()
        assert self.done.wait(1.0), "iteration did not end within 1 s of close()"
        assert self.source.join(timeout_s=self.source.config.timeout_s + 1.0)


def _assert_continuous(frames: list[Frame]) -> None:
    assert [f.index for f in frames] == list(range(len(frames))), "frame indexes must not skip"
    assert np.all(np.diff([f.timestamp_s for f in frames]) > 0), "timestamps must increase"


def test_reads_a_live_stream(rtsp_server: RtspTestServer) -> None:
    source = open_source(rtsp_server.url, SourceConfig(**FAST_RETRY))
    assert isinstance(source, LiveSource)
    assert source.is_live and source.name == rtsp_server.url and source.fps == FPS
    collector = Collector(source).start()
    collector.wait_for(30, timeout_s=10)
    # Frames buffered while the connection was set up arrive in a burst; after it, frames come
    # at the stream rate: 25 more take about a second.
    time.sleep(0.2)
    first = len(collector.frames)
    collector.wait_for(first + 25, timeout_s=10)
    wall_span_s = collector.arrivals_s[first + 24] - collector.arrivals_s[first]
    collector.stop()

    frames = collector.frames
    _assert_continuous(frames)
    image = frames[25].image
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"] and 0 < float(image.mean()) < 255
    assert wall_span_s > 0.5 * 24 / FPS
    # Within one connection the times follow the stream's PTS: 1/25 s apart.
    np.testing.assert_allclose(np.diff([f.timestamp_s for f in frames[1:]]), 1 / FPS, atol=1e-6)
    assert source.stats.reconnects == 0 and source.stats.frames_read >= first + 25
    assert source.stats.connection_state == "closed"


def test_server_killed_then_back_reconnects(rtsp_server: RtspTestServer, caplog) -> None:
    source = open_source(rtsp_server.url, SourceConfig(**FAST_RETRY))
    collector = Collector(source).start()
    with caplog.at_level(logging.INFO, logger="app.sources"):
        collector.wait_for(30, timeout_s=10)

        rtsp_server.kill()
        killed_at = time.monotonic()
        assert wait_until(lambda: source.stats.connection_state == "reconnecting", 3.0)
        # Stay down long enough for a reconnect attempt to fail against the closed port.
        assert wait_until(lambda: source.stats.reconnect_attempt >= 2, 3.0), source.stats
        assert "Connection refused" in source.stats.last_error
        before = len(collector.frames)

        rtsp_server.start()  # same port
        collector.wait_for(before + 30, timeout_s=15)
        outage_s = time.monotonic() - killed_at
    collector.stop()

    frames = collector.frames
    _assert_continuous(frames)
    assert source.stats.reconnects == 1
    # The time line follows the wall clock across the outage (within the reconnect time).
    gap_s = frames[before].timestamp_s - frames[before - 1].timestamp_s
    assert 0.5 < gap_s < outage_s + 1.0
    assert "connection lost" in caplog.text and "reconnected" in caplog.text


def test_stalled_server_times_out_within_5_s_then_reconnects(rtsp_server: RtspTestServer) -> None:
    config = SourceConfig(**FAST_RETRY)
    assert config.timeout_s == 5.0  # the default is what we promise
    source = open_source(rtsp_server.url, config)
    collector = Collector(source).start()
    collector.wait_for(40, timeout_s=10)

    rtsp_server.stop()  # SIGSTOP: sockets stay open, nothing arrives
    stopped_at = time.monotonic()
    assert wait_until(lambda: source.stats.connection_state == "reconnecting", 8.0), source.stats
    detected_after_s = time.monotonic() - stopped_at
    assert 4.0 <= detected_after_s <= config.timeout_s + 0.75, detected_after_s
    assert "no new video frame for 5 s" in source.stats.last_error
    before = len(collector.frames)

    rtsp_server.cont()
    collector.wait_for(before + 25, timeout_s=15)
    collector.stop()
    _assert_continuous(collector.frames)
    assert source.stats.reconnects == 1
    assert collector.frames[before].timestamp_s - collector.frames[before - 1].timestamp_s > 4.0


def test_close_while_stalled_returns_promptly(rtsp_server: RtspTestServer) -> None:
    source = open_source(rtsp_server.url, SourceConfig(**FAST_RETRY))
    collector = Collector(source).start()
    collector.wait_for(10, timeout_s=10)
    rtsp_server.stop()
    time.sleep(1.0)  # the reader is now blocked in a read that will not return for a while
    closed_at = time.monotonic()
    source.close()
    assert collector.done.wait(1.0), "iteration still blocked 1 s after close()"
    assert time.monotonic() - closed_at < 0.5
    # The reader thread leaves when its bounded read expires (read_timeout_s = 2.5 s).
    assert source.join(timeout_s=source.config.timeout_s)
    assert collector.error is None


def test_gives_up_after_max_reconnect_attempts(rtsp_server: RtspTestServer) -> None:
    config = SourceConfig(reconnect_initial_s=0.1, reconnect_max_s=0.2, max_reconnect_attempts=2)
    source = open_source(rtsp_server.url, config)
    collector = Collector(source).start()
    collector.wait_for(10, timeout_s=10)
    rtsp_server.kill()
    assert collector.done.wait(5.0), source.stats
    assert isinstance(collector.error, SourceError)
    assert "gave up after 2 reconnect attempts" in str(collector.error)
    assert source.stats.connection_state == "closed"


def test_credentials_never_appear_in_names_or_logs(rtsp_server: RtspTestServer, caplog) -> None:
    secret_url = rtsp_server.url.replace("rtsp://", "rtsp://viewer:pa55word@")
    with caplog.at_level(logging.DEBUG, logger="app.sources"):
        source = open_source(secret_url, SourceConfig(**FAST_RETRY))
        collector = Collector(source).start()
        collector.wait_for(5, timeout_s=10)
        rtsp_server.kill()  # provoke the reconnect log lines and errors
        assert wait_until(lambda: source.stats.reconnect_attempt >= 2, 5.0), source.stats
        collector.stop()
    assert source.name == rtsp_server.url.replace("rtsp://", "rtsp://viewer:***@")
    assert collector.frames[0].source == source.name
    assert "pa55word" not in caplog.text and "pa55word" not in source.stats.last_error
    assert "viewer:***@" in caplog.text
