"""Counting events and counts to an MQTT broker, with nothing lost when the broker is away.

Topics (``<prefix>`` is :attr:`MqttConfig.topic_prefix`, ``yolov7-track`` by default; the
layout follows Frigate's: predictable names, retained where a newcomer wants the current value):

=================================  ==========================================================
``<prefix>/available``             ``online`` / ``offline``; retained, QoS 1. ``offline`` is
                                   also the last will, sent by the broker if this process
                                   vanishes without closing.
``<prefix>/<camera_id>/events``    one JSON object per event, ``{"camera_id": ..., **event}``
                                   (see :func:`app.spool.event_json`); QoS 1, not retained.
``<prefix>/<camera_id>/counts``    the JSON of the last :meth:`MqttPublisher.publish_counts`
                                   for that camera; QoS 1, retained (latest value wins).
=================================  ==========================================================

Delivery guarantee for events: **at least once, in order**, per publisher. An event is first
appended to a :class:`app.spool.Spool` (committed to disk before :meth:`publish_event`
returns), then a background thread publishes the spooled events in order, at most
:attr:`MqttConfig.max_in_flight` at a time, and removes one from the spool only when the
broker's PUBACK for it arrives. So a broker that is down, a dropped connection, a crash or
``kill -9`` of this process loses nothing: what was not acknowledged is sent again, after the
reconnect (paho re-sends its unacknowledged messages first, in order) or by the next publisher
on the same spool. The price is possible duplicates: an event whose PUBACK was lost with the
connection is sent again (with MQTT's DUP flag), so a consumer that must count exactly once
should drop repeats (an event is identified by its content, e.g. ``camera_id, zone,
track_id, direction, frame_index``). After a reconnect, new events wait until every event
still in flight from before has been acknowledged, so the first arrival of each event keeps
the order of :meth:`publish_event` calls. The topic is stored with each spooled event: events
spooled before a change of ``topic_prefix`` still go to the old topic.

The broker's PUBACK hands the event over to the broker: whether it then reaches a subscriber
depends on the broker and the subscriber (a QoS 1 subscription with a persistent session
gets what was published while it was away; a broker that is killed loses what it had not yet
forwarded unless it persists its state).

Counts are not spooled: while the broker is away only the latest counts per camera are kept,
in memory, and sent on reconnect; they are lost with the process (the next counts replace them).

Connection: the client connects in the background (a publisher can be created while the broker
is down) and reconnects by itself with exponential backoff from
:attr:`MqttConfig.reconnect_min_delay_s` to :attr:`MqttConfig.reconnect_max_delay_s`. A broker
that refuses the client for good (bad user name or password, not authorized, client id
rejected, protocol refused) is not retried: the error is logged once and kept in
:attr:`MqttPublisher.failure`, and later ``publish_*`` calls raise it; already spooled events
stay in the spool for a run with the right settings.

``paho-mqtt`` (2.0 or newer) is an optional extra, imported only when a publisher is created:
``pip install 'yolov7-track[mqtt]'``. :class:`MqttConfig` works without it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from app.spool import (
    InvalidEventError,
    OutputClosedError,
    OutputConfigError,
    OutputError,
    Spool,
    check_camera_id,
    encode_json,
    event_json,
    spool_path,
    wait_until,
)
from yolov7_track.checks import require_positive

__all__ = [
    "MqttConfig",
    "MqttPublisher",
    "MqttUnavailableError",
    "MqttRefusedError",
    "PAHO_MISSING_MESSAGE",
    "EVENT_QOS",
]

logger = logging.getLogger(__name__)

PAHO_MISSING_MESSAGE = "MQTT output needs paho-mqtt: pip install 'yolov7-track[mqtt]'"
EVENT_QOS = 1  # at least once: the broker acknowledges each event (PUBACK)
AVAILABLE_ONLINE = "online"
AVAILABLE_OFFLINE = "offline"
# CONNACK reasons that retrying cannot fix (MQTT 3.1.1 codes as paho names them, and MQTT 5).
_FATAL_CONNACK_REASONS = frozenset({
    "Unsupported protocol version",
    "Client identifier not valid",
    "Bad user name or password",
    "Not authorized",
    "Banned",
    "Bad authentication method",
})
_IDLE_WAIT_S = 0.5  # the delivery thread looks at its state at least this often
_OFFLINE_WAIT_S = 1.0  # close(): how long the retained "offline" may take at most


class MqttUnavailableError(OutputError, ImportError):
    """paho-mqtt (2.0 or newer) is not installed; the message says how to install it."""


class MqttRefusedError(OutputError):
    """The broker refused the connection for a reason retrying cannot fix (credentials...)."""


def _import_paho() -> Any:
    """The ``paho.mqtt.client`` module, or :class:`MqttUnavailableError` with the install hint."""
    try:
        import paho.mqtt.client as paho_client
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401  (2.0 and newer only)
    except ImportError as error:
        raise MqttUnavailableError(PAHO_MISSING_MESSAGE) from error
    return paho_client


def _check_topic_prefix(prefix: str) -> None:
    if not isinstance(prefix, str) or not prefix:
        raise OutputConfigError(f"MQTT topic_prefix must be a non-empty string, got {prefix!r}")
    for char in "+#\x00":
        if char in prefix:
            raise OutputConfigError(
                f"MQTT topic_prefix {prefix!r} contains {char!r}; wildcards and NUL are not "
                f"allowed in the topics we publish to"
            )
    if "" in prefix.split("/"):
        raise OutputConfigError(
            f"MQTT topic_prefix {prefix!r} has an empty level (a leading, trailing or double "
            f"'/'); write it like 'yolov7-track' or 'site1/yolov7-track'"
        )


def _positive_finite(name: str, value: float) -> float:
    require_positive(value, f"MQTT {name} (seconds)", OutputConfigError)
    return float(value)


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """Where and how to publish; validated on construction.

    Attributes:
        host: broker host name or IP address (no ``mqtt://`` scheme).
        spool_dir: folder of the spool file ``<spool_dir>/<spool_name>.sqlite`` (created if
            missing). Events wait there until the broker acknowledges them.
        port: broker TCP port, 1..65535 (1883 by default; no TLS).
        topic_prefix: first topic level(s), see the module docstring; no wildcards, no empty
            levels.
        client_id: MQTT client id; empty (the default) picks ``yolov7-track-<random hex>``. Two
            clients with the same id knock each other off the broker.
        username, password: credentials; ``password`` needs ``username``.
        keepalive_s: MQTT keep-alive interval, 1..65535 seconds; a dead connection is noticed
            after about 1.5 times this.
        reconnect_min_delay_s, reconnect_max_delay_s: reconnect backoff, doubling from the
            first to the second.
        max_in_flight: events published and not yet acknowledged, at most (1..65535).
        spool_name: the spool file's name without ``.sqlite``; two outputs need two names.

    Raises:
        OutputConfigError: a value is out of range; the message names the setting.
    """

    host: str
    spool_dir: Path
    port: int = 1883
    topic_prefix: str = "yolov7-track"
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 60
    reconnect_min_delay_s: float = 1.0
    reconnect_max_delay_s: float = 60.0
    max_in_flight: int = 20
    spool_name: str = "mqtt"

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip() or any(
                char.isspace() for char in self.host):
            raise OutputConfigError(f"MQTT host must be a host name or address, got {self.host!r}")
        if "://" in self.host:
            raise OutputConfigError(
                f"MQTT host {self.host!r} must be a bare host name, without a scheme; "
                f"give the port separately"
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 1 <= self.port <= 65535:
            raise OutputConfigError(f"MQTT port must be an integer in 1..65535, got {self.port!r}")
        _check_topic_prefix(self.topic_prefix)
        if not isinstance(self.client_id, str) or "\x00" in self.client_id \
                or len(self.client_id.encode("utf-8")) > 65535:
            raise OutputConfigError(f"MQTT client_id must be a string, got {self.client_id!r}")
        if self.username is not None and (not isinstance(self.username, str) or not self.username):
            raise OutputConfigError("MQTT username must be a non-empty string or None")
        if self.password is not None:
            if not isinstance(self.password, str):
                raise OutputConfigError("MQTT password must be a string or None")
            if self.username is None:
                raise OutputConfigError("MQTT password is set but username is not; set both")
        if isinstance(self.keepalive_s, bool) or not isinstance(self.keepalive_s, int) \
                or not 1 <= self.keepalive_s <= 65535:
            raise OutputConfigError(
                f"MQTT keepalive_s must be an integer in 1..65535, got {self.keepalive_s!r}")
        low = _positive_finite("reconnect_min_delay_s", self.reconnect_min_delay_s)
        high = _positive_finite("reconnect_max_delay_s", self.reconnect_max_delay_s)
        if high < low:
            raise OutputConfigError(
                f"MQTT reconnect_max_delay_s ({high}) must be at least reconnect_min_delay_s "
                f"({low})")
        if isinstance(self.max_in_flight, bool) or not isinstance(self.max_in_flight, int) \
                or not 1 <= self.max_in_flight <= 65535:
            raise OutputConfigError(
                f"MQTT max_in_flight must be an integer in 1..65535, got {self.max_in_flight!r}")
        if not isinstance(self.spool_dir, (str, Path)) or not str(self.spool_dir):
            raise OutputConfigError(f"MQTT spool_dir must be a folder path, got {self.spool_dir!r}")
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        spool_path(self.spool_dir, self.spool_name)  # validates the name

    @property
    def qos(self) -> int:
        """QoS of events and counts: always 1 (at least once)."""
        return EVENT_QOS

    @property
    def spool_path(self) -> Path:
        return spool_path(self.spool_dir, self.spool_name)

    @property
    def availability_topic(self) -> str:
        return f"{self.topic_prefix}/available"

    def events_topic(self, camera_id: str) -> str:
        """``<prefix>/<camera_id>/events``. Raises InvalidEventError for a bad camera id."""
        return f"{self.topic_prefix}/{check_camera_id(camera_id)}/events"

    def counts_topic(self, camera_id: str) -> str:
        """``<prefix>/<camera_id>/counts``. Raises InvalidEventError for a bad camera id."""
        return f"{self.topic_prefix}/{check_camera_id(camera_id)}/counts"

    def __repr__(self) -> str:  # never show the password
        password = None if self.password is None else "***"
        return (f"MqttConfig(host={self.host!r}, port={self.port}, topic_prefix="
                f"{self.topic_prefix!r}, client_id={self.client_id!r}, username="
                f"{self.username!r}, password={password!r}, spool={str(self.spool_path)!r})")


class MqttPublisher:
    """Publishes events (spooled, at least once, in order) and counts (retained) to a broker.

    See the module docstring for topics and guarantees. Creating one opens the spool, starts
    paho's network thread (connecting in the background) and a delivery thread; events left in
    the spool by an earlier run are sent first.

    Thread-safety: :meth:`publish_event`, :meth:`publish_counts` and the properties may be
    called from any thread; events from several threads are sent in the order their
    ``publish_event`` calls appended them. :meth:`close` once, from one thread.

    Args:
        config: the validated settings.

    Raises:
        MqttUnavailableError: paho-mqtt 2.0+ is not installed.
        SpoolError: the spool cannot be opened (in use by another output, not a spool...).
    """

    def __init__(self, config: MqttConfig) -> None:
        paho = _import_paho()
        from paho.mqtt.enums import CallbackAPIVersion

        self.config = config
        self._spool = Spool(config.spool_path)
        self._state = threading.Condition()
        # Guarded by _state:
        self._connected = False
        self._resync = False  # reconnected with events in flight: send those before new ones
        self._acked_mids: list[int] = []
        self._latest_counts: dict[str, bytes] = {}
        self._counts_in_flight: set[int] = set()
        self._wake = False
        self._stop = False
        self._closed = False
        self._failure: OutputError | None = None
        self._outage_logged = False
        self._ever_connected = False

        client_id = config.client_id or f"yolov7-track-{secrets.token_hex(4)}"
        self._where = f"mqtt://{config.host}:{config.port}"
        try:
            client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                 client_id=client_id, clean_session=True,
                                 protocol=paho.MQTTv311)
            client.max_inflight_messages_set(config.max_in_flight)
            client.reconnect_delay_set(config.reconnect_min_delay_s, config.reconnect_max_delay_s)
            client.will_set(config.availability_topic, AVAILABLE_OFFLINE, qos=EVENT_QOS,
                            retain=True)
            if config.username is not None:
                client.username_pw_set(config.username, config.password)
            client.on_connect = self._on_connect
            client.on_connect_fail = self._on_connect_fail
            client.on_disconnect = self._on_disconnect
            client.on_publish = self._on_publish
            client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
            client.loop_start()
        except BaseException:
            self._spool.close()
            raise
        self._client = client
        self._thread = threading.Thread(target=self._run, name=f"mqtt-out {self._where}",
                                        daemon=True)
        self._thread.start()
        logger.info("MQTT output to %s, topics %s/<camera>/events|counts, spool %s",
                    self._where, config.topic_prefix, config.spool_path)

    # -- public API -----------------------------------------------------------------------

    def publish_event(self, camera_id: str, event: Mapping[str, Any]) -> None:
        """Queue one event for ``<prefix>/<camera_id>/events``; durable when this returns.

        The JSON body is ``{"camera_id": camera_id, **event}`` (see
        :func:`app.spool.event_json`). Delivery happens in the background (module docstring).

        Raises:
            InvalidEventError: bad camera id, or an event that cannot be JSON.
            OutputClosedError: the publisher is closed.
            MqttRefusedError: the broker refused the client for good (see :attr:`failure`).
            SpoolError: the spool cannot be written (full disk...); the event was not queued.
        """
        topic = self.config.events_topic(camera_id)
        payload = event_json(camera_id, event)
        self._check_usable()
        self._spool.append(payload, key=topic)
        self._poke()

    def publish_counts(self, camera_id: str, counts: Mapping[str, Any]) -> None:
        """Publish ``counts`` (any JSON-able mapping) retained at ``<prefix>/<camera_id>/counts``.

        Not spooled: while the broker is away only the latest counts per camera are kept (in
        memory) and sent on reconnect.

        Raises:
            InvalidEventError: bad camera id, or counts that cannot be JSON.
            OutputClosedError: the publisher is closed.
            MqttRefusedError: the broker refused the client for good (see :attr:`failure`).
        """
        self.config.counts_topic(camera_id)
        if not isinstance(counts, Mapping):
            raise InvalidEventError(f"counts must be a mapping (dict), got {type(counts).__name__}")
        payload = encode_json(dict(counts), f"counts for camera {camera_id!r}")
        self._check_usable()
        with self._state:
            self._latest_counts[camera_id] = payload
            self._wake = True
            self._state.notify_all()

    @property
    def pending(self) -> int:
        """Events spooled and not yet acknowledged by the broker (including those in flight)."""
        return len(self._spool)

    @property
    def connected(self) -> bool:
        """True while the client has a connection the broker accepted."""
        with self._state:
            return self._connected

    @property
    def failure(self) -> OutputError | None:
        """The error that stopped delivery for good (refused credentials, spool error), or None.

        Read without raising; cheap enough to poll once per frame.
        """
        with self._state:
            return self._failure

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def flush(self, timeout_s: float) -> bool:
        """Wait until every spooled event and the latest counts are acknowledged by the broker,
        delivery has failed, or ``timeout_s`` passes. Returns True if everything was delivered.
        """
        return wait_until(self._state,
                          lambda: len(self._spool) == 0 and not self._latest_counts and not self._counts_in_flight,
                          lambda: self._failure is not None or self._stop, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what can be sent within ``timeout_s``, then disconnect; the rest stays spooled.

        Waits up to ``timeout_s`` seconds for the spool to drain (so with the broker away it
        waits the whole time), publishes the retained ``offline`` (waiting at most one more
        second), disconnects cleanly and closes the spool. Events not acknowledged by then are
        sent by the next publisher on the same spool (one that was in flight may arrive twice).
        Idempotent; never raises for delivery problems (they are logged).
        """
        with self._state:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout_s)
        with self._state:
            self._stop = True
            self._state.notify_all()
        self._thread.join()
        try:
            if self.connected:
                info = self._client.publish(self.config.availability_topic, AVAILABLE_OFFLINE,
                                            qos=EVENT_QOS, retain=True)
                deadline = time.monotonic() + _OFFLINE_WAIT_S
                while not self._offline_sent(info) and time.monotonic() < deadline \
                        and self.connected:
                    time.sleep(0.01)
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            left = len(self._spool)
            self._spool.close()
        if left:
            logger.warning("MQTT output to %s closed with %d event(s) not yet delivered; they "
                           "stay in %s for the next run", self._where, left, self._spool.path)
        else:
            logger.info("MQTT output to %s closed; every event delivered", self._where)

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _offline_sent(info: Any) -> bool:
        try:
            return bool(info.is_published())
        except (RuntimeError, ValueError):  # not queued: nothing to wait for
            return True

    def _check_usable(self) -> None:
        with self._state:
            if self._closed:
                raise OutputClosedError(f"MQTT output to {self._where} is closed")
            if self._failure is not None:
                raise self._failure

    def _poke(self) -> None:
        with self._state:
            self._wake = True
            self._state.notify_all()

    def _fail(self, error: OutputError) -> None:
        with self._state:
            if self._failure is None:
                self._failure = error
                logger.error("%s", error)
            self._state.notify_all()

    # paho callbacks: they run on paho's network thread, some with paho's message lock held, so
    # they only take self._state (never held while calling into paho) and record what happened.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            reason = str(reason_code)
            if reason in _FATAL_CONNACK_REASONS:
                self._fail(MqttRefusedError(
                    f"MQTT broker {self._where} refused the connection: {reason}; check "
                    f"username, password and client id (spooled events are kept in "
                    f"{self.config.spool_path})"))
                client.disconnect()
            else:
                logger.warning("MQTT broker %s refused the connection (%s); retrying",
                               self._where, reason)
            return
        client.publish(self.config.availability_topic, AVAILABLE_ONLINE, qos=EVENT_QOS,
                       retain=True)
        with self._state:
            self._connected = True
            if self._outage_logged or self._ever_connected:
                logger.info("MQTT broker %s connected again; %d event(s) to send", self._where,
                            len(self._spool))
            else:
                logger.info("MQTT broker %s connected", self._where)
            self._outage_logged = False
            self._ever_connected = True
            self._wake = True
            self._state.notify_all()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        with self._state:
            if not self._outage_logged:
                self._outage_logged = True
                logger.warning("cannot connect to MQTT broker %s; retrying with backoff up to "
                               "%g s, events are spooled meanwhile", self._where,
                               self.config.reconnect_max_delay_s)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        with self._state:
            was_connected = self._connected
            self._connected = False
            self._resync = True
            if was_connected and not self._stop and self._failure is None:
                self._outage_logged = True
                logger.warning("MQTT broker %s disconnected (%s); reconnecting, events are "
                               "spooled meanwhile", self._where, reason_code)
            self._wake = True
            self._state.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        with self._state:
            self._acked_mids.append(mid)
            self._wake = True
            self._state.notify_all()

    # the delivery thread

    def _run(self) -> None:
        try:
            self._deliver()
        except OutputError as error:
            self._fail(error)
        except Exception as error:  # a bug: keep the traceback, and say delivery stopped
            logger.exception("MQTT delivery thread for %s stopped", self._where)
            self._fail(OutputError(f"MQTT delivery to {self._where} stopped: {error!r}"))

    def _deliver(self) -> None:
        """Hand spooled events to paho in order, ``max_in_flight`` at a time; ack on PUBACK.

        ``in_flight`` maps paho message ids to spool ids. paho keeps every message handed to it
        until its PUBACK and sends the unacknowledged ones again, in order, after a reconnect;
        so this thread never re-reads what it has already handed over, and after a reconnect
        (``_resync``) hands nothing new until those are acknowledged.
        """
        in_flight: dict[int, int] = {}
        last_handed_id = 0
        while True:
            with self._state:
                if not (self._wake or self._stop or self._failure is not None):
                    self._state.wait(_IDLE_WAIT_S)
                self._wake = False
                if self._stop or self._failure is not None:
                    return
                acked, self._acked_mids = self._acked_mids, []
                connected = self._connected
                counts: dict[str, bytes] = {}
                if connected:
                    counts, self._latest_counts = self._latest_counts, {}
                for mid in acked:
                    self._counts_in_flight.discard(mid)

            done = [in_flight.pop(mid) for mid in acked if mid in in_flight]
            if done:
                self._spool.ack_many(done)
            with self._state:
                if self._resync and connected and not in_flight:
                    self._resync = False
                resync = self._resync
                self._state.notify_all()

            for camera_id, payload in counts.items():
                info = self._client.publish(self.config.counts_topic(camera_id), payload,
                                            qos=EVENT_QOS, retain=True)
                with self._state:
                    self._counts_in_flight.add(info.mid)

            room = self.config.max_in_flight - len(in_flight)
            if not connected or resync or room <= 0:
                continue
            for item in self._spool.peek(room, after_id=last_handed_id):
                with self._state:
                    if self._resync or not self._connected:
                        break  # see the docstring: a reconnect takes at least the min delay
                info = self._client.publish(item.key, item.payload, qos=EVENT_QOS, retain=False)
                if info.mid in in_flight or self._not_queued(info):
                    break  # paho did not take it; try again on the next round
                in_flight[info.mid] = item.id
                last_handed_id = item.id

    @staticmethod
    def _not_queued(info: Any) -> bool:
        from paho.mqtt.enums import MQTTErrorCode

        # NO_CONN: queued by paho, sent on reconnect. QUEUE_SIZE: refused (a clash of ids).
        return info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
