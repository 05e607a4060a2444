"""Weights registry and cached, verified downloads (detector.hub), against a local HTTP server."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from detector import hub
from detector.errors import CheckpointError, DownloadError, UnknownModelError
from detector.hub import WeightsRecord, WeightsRegistry, resolve_weights

PAYLOAD = os.urandom(3 * hub.CHUNK_BYTES + 12345)  # several chunks, not a multiple of the chunk size
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA256 = "0" * 64


@dataclass(frozen=True)
class Route:
    body: bytes
    declared_length: int | None = None  # Content-Length sent; None = len(body)
    hang: bool = False  # wait (until the test ends) before answering
    trickle_s: float = 0.0  # > 0: send the body one byte at a time, this many seconds apart


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "no such file")
            return
        if route.hang:
            self.server.release.wait(timeout=10)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        length = len(route.body) if route.declared_length is None else route.declared_length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if route.trickle_s > 0:
            self._trickle(route)
            return
        self.wfile.write(route.body)  # then the handler returns and HTTP/1.0 closes the socket
        self.wfile.flush()

    def _trickle(self, route: Route) -> None:
        """A hostile server: one byte at a time, never idle long enough for a read timeout."""
        try:
            for index in range(len(route.body)):
                if self.server.release.wait(route.trickle_s):
                    return
                self.wfile.write(route.body[index : index + 1])
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up: what we test for
            return

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, routes: dict[str, Route]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.release = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


ROUTES = {
    "/good/model.pt": Route(PAYLOAD),
    "/cut/model.pt": Route(PAYLOAD[: len(PAYLOAD) // 2], declared_length=len(PAYLOAD)),
    "/hang/model.pt": Route(b"", hang=True),
    "/trickle/model.pt": Route(PAYLOAD, trickle_s=0.01),
}


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    httpd = _Server(ROUTES)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _registry(sha256: str | None = PAYLOAD_SHA256, size_bytes: int | None = len(PAYLOAD)) -> WeightsRegistry:
    return WeightsRegistry([WeightsRecord("test-model", "model.pt", "yolov7-tiny", 640, sha256=sha256, size_bytes=size_bytes)])


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _resolve(registry: WeightsRegistry, cache: Path, base_url: str, **kwargs: object) -> Path:
    kwargs.setdefault("progress", False)
    kwargs.setdefault("timeout_s", 5.0)
    return resolve_weights("test-model", cache_directory=cache, base_url=base_url, registry=registry, **kwargs)


# ------------------------------------------------------------------ downloads


def test_good_download_is_verified_and_cached(server: _Server, cache: Path) -> None:
    path = _resolve(_registry(), cache, f"{server.base_url}/good")
    assert path == cache / "model.pt"
    assert path.read_bytes() == PAYLOAD
    assert _files(cache) == ["model.pt", "model.pt.sha256.json"]  # no temporary file left
    # Second call: served from the cache, the (now unreachable) server is not asked.
    unreachable = f"http://127.0.0.1:{_unused_port()}"
    assert _resolve(_registry(), cache, unreachable) == path
    assert _resolve(_registry(), cache, unreachable, download=False) == path


def test_progress_bar_path(server: _Server, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _resolve(_registry(), cache, f"{server.base_url}/good", progress=True)
    assert "model.pt" in capsys.readouterr().err  # tqdm writes its bar to stderr


def test_unknown_checksum_downloads_with_warning(server: _Server, cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="detector.hub"):
        path = _resolve(_registry(sha256=None, size_bytes=None), cache, f"{server.base_url}/good")
    assert path.read_bytes() == PAYLOAD
    assert PAYLOAD_SHA256 in caplog.text and "no known sha256" in caplog.text


@pytest.mark.parametrize(
    ("route", "registry", "message"),
    [
        pytest.param("/good", _registry(sha256=WRONG_SHA256), r"sha256 of model\.pt .* expected 0{64}", id="wrong-hash"),
        pytest.param("/good", _registry(size_bytes=len(PAYLOAD) - 1), r"announces \d+ bytes", id="wrong-size"),
        pytest.param("/cut", _registry(), r"cut off after \d+ of \d+ bytes", id="cut-off"),
        pytest.param("/cut", _registry(sha256=None, size_bytes=None), r"cut off", id="cut-off-size-unknown"),
        pytest.param("/missing", _registry(), r"HTTP 404", id="http-404"),
    ],
)
def test_failed_download_leaves_nothing(
    server: _Server, cache: Path, route: str, registry: WeightsRegistry, message: str
) -> None:
    with pytest.raises(DownloadError, match=message):
        _resolve(registry, cache, server.base_url + route)
    assert _files(cache) == []  # neither the final file nor a temporary one


def test_unreachable_host_says_how_to_pass_a_local_file(cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"cannot reach .*offline.*--weights /path/to/model\.pt"):
        _resolve(_registry(), cache, f"http://127.0.0.1:{_unused_port()}")
    assert _files(cache) == []


def test_timeout(server: _Server, cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"timed out after 0\.3 s"):
        _resolve(_registry(), cache, f"{server.base_url}/hang", timeout_s=0.3)
    assert _files(cache) == []


def test_interrupted_download_leaves_nothing(server: _Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class InterruptingBar:
        def __init__(self, **kwargs: object) -> None:
            pass

        def __enter__(self) -> InterruptingBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the transfer

    monkeypatch.setattr(hub, "tqdm", InterruptingBar)
    with pytest.raises(KeyboardInterrupt):
        _resolve(_registry(), cache, f"{server.base_url}/good")
    assert _files(cache) == []


def test_not_cached_and_download_disabled(cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"not in the cache .* --weights /path/to/model\.pt"):
        _resolve(_registry(), cache, "http://127.0.0.1:9", download=False)


@pytest.mark.parametrize("corruption", ["wrong size", "same size, wrong bytes"])
def test_corrupt_cached_file(server: _Server, cache: Path, corruption: str, caplog: pytest.LogCaptureFixture) -> None:
    cache.mkdir()
    bad = PAYLOAD[:-1] if corruption == "wrong size" else bytes(len(PAYLOAD))
    (cache / "model.pt").write_bytes(bad)
    with pytest.raises(CheckpointError, match=r"corrupt .*delete the file"):
        _resolve(_registry(), cache, f"{server.base_url}/good", download=False)
    with caplog.at_level(logging.WARNING, logger="detector.hub"):
        path = _resolve(_registry(), cache, f"{server.base_url}/good")
    assert path.read_bytes() == PAYLOAD
    assert "downloading them again" in caplog.text


def test_file_changed_after_verification_is_detected(server: _Server, cache: Path) -> None:
    path = _resolve(_registry(), cache, f"{server.base_url}/good")
    path.write_bytes(bytes(len(PAYLOAD)))  # same size, new mtime: the sidecar no longer vouches
    with pytest.raises(CheckpointError, match=r"sha256 [0-9a-f]{64}, expected"):
        _resolve(_registry(), cache, f"{server.base_url}/good", download=False)


def test_invalid_timeout_refused(cache: Path) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        _resolve(_registry(), cache, "http://127.0.0.1:9", timeout_s=0)
    with pytest.raises(ValueError, match="download_timeout_s"):
        _resolve(_registry(), cache, "http://127.0.0.1:9", download_timeout_s=0)
    with pytest.raises(ValueError, match="min_rate_bytes_per_s"):
        _resolve(_registry(), cache, "http://127.0.0.1:9", min_rate_bytes_per_s=-1)


def test_trickling_server_hits_the_total_deadline(server: _Server, cache: Path) -> None:
    """One byte every 10 ms never trips the 5 s per-read timeout; the total deadline ends it."""
    url = f"{server.base_url}/trickle"
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"took longer than 0\.5 s \(download_timeout_s") as info:
        _resolve(_registry(), cache, url, download_timeout_s=0.5, min_rate_bytes_per_s=0)
    assert time.monotonic() - started < 3.0
    assert f"{url}/model.pt" in str(info.value)
    assert _files(cache) == []


def test_trickling_server_is_too_slow(server: _Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "RATE_WINDOW_S", 0.3)
    url = f"{server.base_url}/trickle"
    started = time.monotonic()
    with pytest.raises(DownloadError, match=r"too slow: \d+ bytes/s over the last 0\.\d s, below the minimum of 10000") as info:
        _resolve(_registry(), cache, url)
    assert time.monotonic() - started < 3.0
    assert f"{url}/model.pt" in str(info.value)
    assert _files(cache) == []


def test_transfer_watch_rate_windows() -> None:
    """A fast window resets the measure; a slow one fails; the deadline is total."""
    now = [0.0]
    limits = hub._TransferLimits(timeout_s=1.0, download_timeout_s=500.0, min_rate_bytes_per_s=100.0)
    watch = hub._TransferWatch("http://x/m.pt", limits, "hint", clock=lambda: now[0])
    now[0] = hub.RATE_WINDOW_S
    watch.check(int(200 * hub.RATE_WINDOW_S))  # 200 B/s: fine, new window
    now[0] = 2 * hub.RATE_WINDOW_S
    with pytest.raises(DownloadError, match="too slow: 50 bytes/s"):
        watch.check(int(250 * hub.RATE_WINDOW_S))
    now[0] = 0.0
    fresh = hub._TransferWatch("http://x/m.pt", limits, "hint", clock=lambda: now[0])
    now[0] = 501.0
    with pytest.raises(DownloadError, match=r"http://x/m\.pt took longer than 500 s"):
        fresh.check(10**9)  # fast enough, but past the deadline


# ------------------------------------------------------------------ registry and configuration


def test_official_registry() -> None:
    deploy = ["yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e"]
    assert hub.available_weights()[: len(deploy)] == deploy
    tiny, yolov7 = hub.REGISTRY.get("yolov7-tiny"), hub.REGISTRY.get("yolov7")
    assert tiny.url == "https://github.com/WongKinYiu/yolov7/releases/download/v0.1/yolov7-tiny.pt"
    assert (tiny.sha256, tiny.size_bytes) == ("0fa1423606133c06362ec716029dade1169d5631e83195b75d8efa66d2ee0b77", 12_639_769)
    assert (yolov7.sha256, yolov7.size_bytes) == ("d1ac3c74eb96a3eec77949c0f37a06bc272756606ff011d9353f7abff4e0c71d", 75_587_165)
    for record in hub.REGISTRY:
        assert record.url == f"{hub.OFFICIAL_RELEASE_URL}/{record.filename}"
        assert record.img_size == (1280 if "6" in record.arch else 640), record.name
        assert record.form == ("training" if record.name.endswith("_training") else "deploy")
        assert record.arch in deploy


def test_duplicate_name_refused() -> None:
    registry = _registry()
    with pytest.raises(ValueError, match="already registered"):
        registry.register(WeightsRecord("test-model", "other.pt", "yolov7", 640))


def test_unknown_name_lists_known_names(cache: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"unknown weights name 'yolov9'.*yolov7-tiny"):
        resolve_weights("yolov9", cache_directory=cache, download=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filename": "../evil.pt"}, "filename"),
        ({"sha256": "ABC"}, "sha256"),
        ({"sha256": "A" * 64}, "sha256"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"img_size": 0}, "img_size"),
        ({"form": "fused"}, "form"),
    ],
)
def test_invalid_record_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "x", "filename": "x.pt", "arch": "yolov7", "img_size": 640, **kwargs}
    with pytest.raises(ValueError, match=message):
        WeightsRecord(**fields)  # type: ignore[arg-type]


def test_cache_dir_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(hub.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert hub.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(hub.CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub.cache_dir() == tmp_path / ".cache" / "yolov7-track"


def test_weights_url_override(monkeypatch: pytest.MonkeyPatch) -> None:
    record = hub.REGISTRY.get("yolov7x")
    monkeypatch.delenv(hub.WEIGHTS_URL_ENV_VAR, raising=False)
    assert hub.weights_url(record) == record.url
    monkeypatch.setenv(hub.WEIGHTS_URL_ENV_VAR, "http://mirror.local/weights/")
    assert hub.weights_url(record) == "http://mirror.local/weights/yolov7x.pt"
    assert hub.weights_url(record, "http://other") == "http://other/yolov7x.pt"  # argument wins


def test_environment_base_url_is_used_for_downloads(server: _Server, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hub.WEIGHTS_URL_ENV_VAR, f"{server.base_url}/good")
    path = resolve_weights("test-model", cache_directory=cache, registry=_registry(), progress=False, timeout_s=5.0)
    assert path.read_bytes() == PAYLOAD
