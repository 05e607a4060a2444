"""The webhook output (app/webhook_out.py) against a real local HTTP server: order, retries,
outages, the drop rule for 4xx, and the spool across restarts."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from app.spool import OutputClosedError, OutputConfigError
from app.webhook_out import WebhookConfig, WebhookPoster, is_retryable_status
from mqtt_broker import free_port, wait_until


class Endpoint:
    """A local HTTP server in a thread that records each request and answers from a script.

    ``script`` holds the next answers, ``(status, headers)``; when it is empty the answer is
    200. :meth:`stop` and :meth:`start` take it down and bring it back on the same port.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[dict] = []
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=abc"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output clean
                pass

            def do_GET(self) -> None:
                endpoint._record(self, b"")
                self._answer(405, {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, headers = endpoint._record(self, body)
                self._answer(status, headers)

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                text = b"nope" if status >= 300 else b"ok"
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        return Handler

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict]:
        with self._lock:
            status, headers = self.script.popleft() if self.script else (200, {})
            self.requests.append({"method": handler.command, "path": handler.path,
                                  "headers": dict(handler.headers), "body": body,
                                  "status": status})
            return status, headers

    def start(self) -> None:
        self._server = HTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    def delivered_seqs(self) -> list[int]:
        """``seq`` of every event answered 2xx, in arrival order."""
        return [json.loads(r["body"])["seq"] for r in self.snapshot()
                if r["method"] == "POST" and 200 <= r["status"] < 300]


@pytest.fixture
def endpoint():
    server = Endpoint()
    server.start()
    yield server
    server.stop()


def make_config(tmp_path: Path, url: str, **overrides) -> WebhookConfig:
    settings = dict(url=url, spool_dir=tmp_path / "spool", timeout_s=2.0,
                    backoff_initial_s=0.02, backoff_max_s=0.1,
                    headers={"Authorization": "Bearer t0ken"})
    settings.update(overrides)
    return WebhookConfig(**settings)


def test_events_are_posted_in_order_with_json_and_headers(tmp_path, endpoint):
    poster = WebhookPoster(make_config(tmp_path, endpoint.url))
    try:
        for seq in range(30):
            poster.post_event("cam1", {"seq": seq, "zone": "road"})
        assert poster.flush(10) and poster.pending == 0
    finally:
        poster.close(timeout_s=1)
    requests = endpoint.snapshot()
    assert endpoint.delivered_seqs() == list(range(30)) and len(requests) == 30
    first = requests[0]
    assert first["path"] == "/hook?token=abc"
    assert json.loads(first["body"]) == {"camera_id": "cam1", "seq": 0, "zone": "road"}
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Authorization"] == "Bearer t0ken"
    keys = [r["headers"]["Idempotency-Key"] for r in requests]
    assert len(set(keys)) == 30 and all(len(key) == 32 for key in keys)


def test_retries_after_503_keep_order_and_the_idempotency_key(tmp_path, endpoint, caplog):
    endpoint.script.extend([(503, {}), (503, {"Retry-After": "0"}), (500, {})])
    caplog.set_level(logging.INFO, logger="app.webhook_out")
    poster = WebhookPoster(make_config(tmp_path, endpoint.url))
    try:
        for seq in range(5):
            poster.post_event("cam1", {"seq": seq})
        assert poster.flush(10) and poster.pending == 0
    finally:
        poster.close(timeout_s=1)
    requests = endpoint.snapshot()
    assert [json.loads(r["body"])["seq"] for r in requests] == [0, 0, 0, 0, 1, 2, 3, 4]
    assert len({r["headers"]["Idempotency-Key"] for r in requests[:4]}) == 1
    assert endpoint.delivered_seqs() == list(range(5))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0].getMessage()
    assert "token" not in warnings[0].getMessage()  # the query string may hold a secret
    assert any("answering again" in r.getMessage() for r in caplog.records)


def test_endpoint_down_then_up_delivers_everything_in_order(tmp_path):
    endpoint = Endpoint()  # not started: connection refused
    poster = WebhookPoster(make_config(tmp_path, endpoint.url))
    try:
        for seq in range(10):
            poster.post_event("cam1", {"seq": seq})
        time.sleep(0.3)
        assert poster.pending == 10
        endpoint.start()
        for seq in range(10, 20):
            poster.post_event("cam1", {"seq": seq})
        assert wait_until(lambda: len(endpoint.delivered_seqs()) >= 12, 10)
        endpoint.stop()  # and once more, in the middle of the stream
        time.sleep(0.2)
        endpoint.start()
        assert poster.flush(10) and poster.pending == 0
    finally:
        poster.close(timeout_s=1)
        endpoint.stop()
    assert endpoint.delivered_seqs() == list(range(20))


def test_a_400_drops_that_event_only_with_an_error_naming_url_and_status(tmp_path, endpoint,
                                                                        caplog):
    endpoint.script.extend([(200, {}), (400, {})])
    caplog.set_level(logging.INFO, logger="app.webhook_out")
    poster = WebhookPoster(make_config(tmp_path, endpoint.url))
    try:
        for seq in range(4):
            poster.post_event("cam1", {"seq": seq})
        assert poster.flush(10) and poster.pending == 0
    finally:
        poster.close(timeout_s=1)
    assert [json.loads(r["body"])["seq"] for r in endpoint.snapshot()] == [0, 1, 2, 3]
    assert endpoint.delivered_seqs() == [0, 2, 3]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"http://127.0.0.1:{endpoint.port}/hook" in errors[0] and "HTTP 400" in errors[0]
    assert '"seq":1' in errors[0] and "dropped" in errors[0]


@pytest.mark.parametrize("status, retried", [
    (200, False), (204, False), (400, False), (401, False), (404, False), (413, False),
    (422, False), (408, True), (429, True), (500, True), (502, True), (503, True),
    (301, True), (302, True), (307, True),
])
def test_status_rule_table(status, retried):
    assert is_retryable_status(status) is retried


def test_a_redirect_is_not_followed_but_retried(tmp_path, endpoint):
    endpoint.script.append((302, {"Location": "/elsewhere"}))
    poster = WebhookPoster(make_config(tmp_path, endpoint.url))
    try:
        poster.post_event("cam1", {"seq": 0})
        assert poster.flush(10)
    finally:
        poster.close(timeout_s=1)
    requests = endpoint.snapshot()
    assert [(r["method"], r["path"], r["status"]) for r in requests] == [
        ("POST", "/hook?token=abc", 302), ("POST", "/hook?token=abc", 200)]


def test_max_retries_drops_an_event_after_that_many_retries(tmp_path, endpoint, caplog):
    endpoint.script.extend([(503, {})] * 3)
    poster = WebhookPoster(make_config(tmp_path, endpoint.url, max_retries=2))
    try:
        poster.post_event("cam1", {"seq": 0})
        poster.post_event("cam1", {"seq": 1})
        assert poster.flush(10)
    finally:
        poster.close(timeout_s=1)
    assert [json.loads(r["body"])["seq"] for r in endpoint.snapshot()] == [0, 0, 0, 1]
    assert endpoint.delivered_seqs() == [1]
    assert any("after 2 retries" in r.getMessage() for r in caplog.records
               if r.levelno == logging.ERROR)


def test_spool_survives_close_and_a_new_poster(tmp_path):
    endpoint = Endpoint()
    config = make_config(tmp_path, endpoint.url)
    poster = WebhookPoster(config)
    for seq in range(10):
        poster.post_event("cam1", {"seq": seq})
    started = time.monotonic()
    poster.close(timeout_s=0.2)
    assert time.monotonic() - started < 3
    with pytest.raises(OutputClosedError):
        poster.post_event("cam1", {"seq": 10})
    endpoint.start()
    second = WebhookPoster(config)
    try:
        assert second.pending == 10
        second.post_event("cam1", {"seq": 10})
        assert second.flush(10) and second.pending == 0
    finally:
        second.close(timeout_s=1)
        endpoint.stop()
    assert endpoint.delivered_seqs() == list(range(11))


@pytest.mark.parametrize("overrides, words", [
    ({"url": "ftp://host/x"}, "http:// or https://"),
    ({"url": "host/x"}, "http:// or https://"),
    ({"url": "http:///path"}, "no host"),
    ({"url": "http://u:p@host/"}, "user:password"),
    ({"url": "http://host:99999/"}, "bad port"),
    ({"url": "http://host/a b"}, "http\\(s\\) URL"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"backoff_initial_s": 2.0, "backoff_max_s": 1.0}, "at least"),
    ({"max_retries": -1}, "max_retries"),
    ({"headers": {"X-A": "1\r\nX-B: 2"}}, "line break"),
    ({"headers": {"Content-Length": "3"}}, "set by yolov7-track"),
    ({"spool_name": ""}, "spool name"),
])
def test_config_is_validated_with_a_message_naming_the_setting(tmp_path, overrides, words):
    with pytest.raises(OutputConfigError, match=words) as info:
        make_config(tmp_path, overrides.pop("url", "http://127.0.0.1/hook"), **overrides)
    assert isinstance(info.value, ValueError)


def test_config_is_read_only_and_hides_secrets(tmp_path):
    config = make_config(tmp_path, "https://example.test/hook?token=abc")
    with pytest.raises(TypeError):
        config.headers["X"] = "y"  # type: ignore[index]
    text = repr(config)
    assert "t0ken" not in text and "token=abc" not in text and "Authorization" in text
    assert config.spool_path == tmp_path / "spool" / "webhook.sqlite"
