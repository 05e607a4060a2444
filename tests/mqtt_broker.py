"""A real Mosquitto broker on a free localhost port, for the MQTT output tests.

:class:`MosquittoBroker` writes a config into a temporary folder (``listener PORT 127.0.0.1``,
``allow_anonymous true`` unless users are given, persistence off unless asked for), starts
``mosquitto -c`` as a subprocess, and waits until the port accepts connections. It can be
killed (``SIGKILL``: the broker vanishes, the kernel closes every connection), stopped cleanly
(``SIGTERM``) and started again on the same port, to simulate a broker that goes away.

With ``persistence=True`` the broker saves its state (sessions, subscriptions, queued messages)
to the temporary folder when stopped with ``SIGTERM`` and reloads it on start, like a
production broker restarted for maintenance: a subscriber with a persistent session then gets
what was published while it was away.

``mosquitto`` must be installed (Debian package ``mosquitto``; CI installs it). A missing
binary is a failure, not a skip: the tests of the MQTT output must run.

Also here: :class:`Subscriber`, a paho client that records what it receives.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest

INSTALL_HINT = "apt-get install -y mosquitto"
READY_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """One Mosquitto process at a time, always on the same port (see the module docstring).

    Args:
        workdir: folder for the config, the log and (with ``persistence``) the saved state.
        persistence: save state on SIGTERM and reload it on start.
        users: ``{user: password}``; when given, anonymous clients are refused.
        port: the port to listen on; by default a free one.
    """

    def __init__(self, workdir: Path, persistence: bool = False,
                 users: dict[str, str] | None = None, port: int | None = None) -> None:
        binary = shutil.which("mosquitto") or next(
            (path for path in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
             if Path(path).exists()), None)
        if binary is None:
            pytest.fail(f"the MQTT tests need the mosquitto broker, which is not installed; "
                        f"run: {INSTALL_HINT}", pytrace=False)
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.users = dict(users or {})
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self.config_path = self._write_config()

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"persistence {'true' if self.persistence else 'false'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
        ]
        if os.geteuid() == 0:  # as root, mosquitto would switch to the user "mosquitto", who
            lines.append("user root")  # cannot read our temporary folder
        if self.persistence:
            lines += [f"persistence_location {self.workdir}/", "persistence_file broker.db",
                      "autosave_interval 3600"]
        if self.users:
            password_file = self.workdir / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(password_file), user, password],
                               check=True, capture_output=True)
            password_file.chmod(0o600)
            lines.append(f"password_file {password_file}")
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start the broker on :attr:`port` and wait until it accepts connections."""
        self.kill()
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)],
                                            stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if port_accepts(self.port):
                return
            time.sleep(0.02)
        self.kill()
        pytest.fail(f"mosquitto did not accept connections on 127.0.0.1:{self.port} within "
                    f"{READY_TIMEOUT_S} s; its log:\n{self.log_text()}", pytrace=False)

    def kill(self) -> None:
        """SIGKILL the broker and reap it; no-op when not running."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM the broker (it saves its state when persistent) and reap it."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


class Received(NamedTuple):
    """One message as a subscriber got it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A paho client that subscribes (QoS 1) to ``topics`` and records every message.

    ``persistent=True`` uses a fixed client id and a persistent session (``clean_session``
    false), so a persistent broker keeps its subscription and queued messages across a restart.
    Reconnects by itself (0.1 to 0.5 s backoff). :attr:`messages` is a list of
    :class:`Received`; read it with :meth:`snapshot`. :attr:`subscribed` is set while the
    subscription is acknowledged (cleared on disconnect).
    """

    def __init__(self, port: int, topics: list[str], persistent: bool = False,
                 client_id: str = "test-subscriber") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.topics = topics
        self._lock = threading.Lock()
        self.messages: list[Received] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise AssertionError(f"test subscriber did not subscribe on port {port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.subscribed.clear()

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload),
                                          int(message.qos), bool(message.retain)))

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(predicate, timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())
