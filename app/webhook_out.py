"""Counting events to an HTTP(S) endpoint (a webhook), in order, with nothing lost in an outage.

Each event is one ``POST`` to :attr:`WebhookConfig.url` with the JSON body
``{"camera_id": ..., **event}`` (see :func:`app.spool.event_json`) and the headers
``Content-Type: application/json``, ``Idempotency-Key: <32 hex digits, one per event>`` (the
same on every retry of that event, so the receiver can drop repeats) and
:attr:`WebhookConfig.headers` (e.g. ``Authorization``). Standard library only (``urllib``).

Delivery guarantee: **at least once, in order**. :meth:`WebhookPoster.post_event` appends the
event to a :class:`app.spool.Spool` (committed to disk before it returns); a background thread
posts the spooled events one at a time, oldest first, and removes one from the spool only when
the endpoint has answered it. An event whose answer is lost (a timeout after the endpoint took
it, a crash between the answer and the removal) is posted again: duplicates are possible,
losses are not, except by the rule below.

What an answer means (the response body is read and ignored):

- **2xx**: delivered; the event is removed and the next one is posted.
- **4xx other than 408 and 429**: the endpoint refuses *this* event (bad request, payload too
  large, unprocessable...). Posting it again would give the same answer forever and hold up
  every later event, so the event is **dropped**: an ERROR is logged with the URL, the status,
  the start of the response body and the event, and the next one is posted. This includes 401,
  403 and 404, which usually mean a wrong URL or token and then drop every event: watch the
  log.
- **Anything else**: 408 and 429, 5xx, a redirect (3xx; redirects are not followed, since
  following one would turn the POST into a GET), a connection error or a timeout. The same
  event is posted again after a pause, later events wait behind it (order is kept: head of
  line), and the pause doubles from :attr:`WebhookConfig.backoff_initial_s` up to
  :attr:`WebhookConfig.backoff_max_s`. A ``Retry-After`` header in seconds (429, 503) is
  honoured up to ``backoff_max_s``. With :attr:`WebhookConfig.max_retries` set, an event that
  failed that many retries is dropped with an ERROR; by default it is retried forever and the
  spool keeps everything until the endpoint is back.

The first failure of an outage is logged as a WARNING, every retry at DEBUG, and the recovery at
INFO.
"""

from __future__ import annotations

import http.client
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

from app.spool import (
    OutputClosedError,
    OutputConfigError,
    OutputError,
    Spool,
    SpoolItem,
    event_json,
    spool_path,
    wait_until,
)

__all__ = ["WebhookConfig", "WebhookPoster", "is_retryable_status"]

logger = logging.getLogger(__name__)

USER_AGENT = "yolov7-track-webhook/1"
_RESERVED_HEADERS = frozenset({"content-length", "host", "idempotency-key", "transfer-encoding"})
_BODY_IN_LOG_CHARS = 200


def is_retryable_status(status: int) -> bool:
    """True if an HTTP status means "post the same event again later" (see module docstring)."""
    return not 200 <= status < 300 and not (400 <= status < 500 and status not in (408, 429))


def _seconds(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise OutputConfigError(f"webhook {name} must be a positive number of seconds, "
                                f"got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """Where and how to post; validated on construction.

    Attributes:
        url: ``http://`` or ``https://`` URL with a host; no ``user:password@`` (put
            credentials in ``headers``) and no ``#fragment``.
        spool_dir: folder of the spool file ``<spool_dir>/<spool_name>.sqlite`` (created if
            missing).
        timeout_s: how long one POST may take (connect and answer), seconds.
        max_retries: retries of one event before it is dropped; ``None`` (the default):
            retry forever, nothing is dropped for an outage.
        backoff_initial_s, backoff_max_s: the pause before the first retry, doubling up to
            the second.
        headers: extra request headers (``{"Authorization": "Bearer ..."}``); stored read-only.
            ``Content-Length``, ``Host``, ``Transfer-Encoding`` and ``Idempotency-Key`` are ours.
        spool_name: the spool file's name without ``.sqlite``; two outputs need two names.

    Raises:
        OutputConfigError: a value is invalid; the message names the setting.
    """

    url: str
    spool_dir: Path
    timeout_s: float = 10.0
    max_retries: int | None = None
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    spool_name: str = "webhook"

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url or any(c.isspace() for c in self.url):
            raise OutputConfigError(f"webhook url must be an http(s) URL, got {self.url!r}")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme.lower() not in ("http", "https"):
            raise OutputConfigError(
                f"webhook url must start with http:// or https://, got {self.url!r}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as error:
            raise OutputConfigError(f"webhook url {self.url!r} has a bad port: {error}") from None
        if not host:
            raise OutputConfigError(f"webhook url {self.url!r} has no host")
        if parts.username is not None or parts.password is not None:
            raise OutputConfigError(
                "webhook url must not contain user:password@; pass credentials as a header, "
                "e.g. headers={'Authorization': 'Bearer ...'}")
        if parts.fragment:
            raise OutputConfigError(f"webhook url {self.url!r} must not have a #fragment")
        del port
        _seconds("timeout_s", self.timeout_s)
        low = _seconds("backoff_initial_s", self.backoff_initial_s)
        high = _seconds("backoff_max_s", self.backoff_max_s)
        if high < low:
            raise OutputConfigError(f"webhook backoff_max_s ({high}) must be at least "
                                    f"backoff_initial_s ({low})")
        if self.max_retries is not None and (isinstance(self.max_retries, bool) or not isinstance(
                self.max_retries, int) or self.max_retries < 0):
            raise OutputConfigError(f"webhook max_retries must be None (retry forever) or an "
                                    f"integer >= 0, got {self.max_retries!r}")
        if not isinstance(self.headers, Mapping):
            raise OutputConfigError(f"webhook headers must be a mapping, got {self.headers!r}")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
                raise OutputConfigError(f"webhook header {name!r} must map a name to a string")
            if any(c in name + value for c in "\r\n\x00") or ":" in name:
                raise OutputConfigError(
                    f"webhook header {name!r} contains a line break, NUL or ':' in its name")
            if name.lower() in _RESERVED_HEADERS:
                raise OutputConfigError(f"webhook header {name!r} is set by yolov7-track")
            headers[name] = value
        object.__setattr__(self, "headers", MappingProxyType(headers))
        if not isinstance(self.spool_dir, (str, Path)) or not str(self.spool_dir):
            raise OutputConfigError(
                f"webhook spool_dir must be a folder path, got {self.spool_dir!r}")
        object.__setattr__(self, "spool_dir", Path(self.spool_dir))
        spool_path(self.spool_dir, self.spool_name)  # validates the name

    @property
    def spool_path(self) -> Path:
        return spool_path(self.spool_dir, self.spool_name)

    @property
    def safe_url(self) -> str:
        """The URL without its query string (which may carry a token), for messages."""
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def __repr__(self) -> str:  # header values may be secrets
        return (f"WebhookConfig(url={self.safe_url!r}, timeout_s={self.timeout_s}, "
                f"max_retries={self.max_retries}, backoff_initial_s={self.backoff_initial_s}, "
                f"backoff_max_s={self.backoff_max_s}, headers={sorted(self.headers)}, "
                f"spool={str(self.spool_path)!r})")


class _Outcome(Enum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # a 4xx that retrying cannot fix: drop the event
    RETRY = "retry"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: urllib would re-send a POST as a GET without the body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


class WebhookPoster:
    """Posts events to a webhook, at least once and in order (see the module docstring).

    Creating one opens the spool and starts the delivery thread; events left in the spool by an
    earlier run are posted first.

    Thread-safety: :meth:`post_event` and the properties may be called from any thread; events
    are posted in the order their ``post_event`` calls appended them. :meth:`close` once.

    Args:
        config: the validated settings.

    Raises:
        SpoolError: the spool cannot be opened (in use by another output, not a spool...).
    """

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._spool = Spool(config.spool_path)
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._state = threading.Condition()
        # Guarded by _state:
        self._wake = False
        self._stop = False
        self._closed = False
        self._failure: OutputError | None = None
        self._thread = threading.Thread(target=self._run,
                                        name=f"webhook-out {config.safe_url}", daemon=True)
        self._thread.start()
        logger.info("webhook output to %s, spool %s", config.safe_url, config.spool_path)

    # -- public API -----------------------------------------------------------------------

    def post_event(self, camera_id: str, event: Mapping[str, Any]) -> None:
        """Queue one event; it is on disk when this returns and posted in the background.

        Raises:
            InvalidEventError: bad camera id, or an event that cannot be JSON.
            OutputClosedError: the poster is closed.
            OutputError: delivery stopped for good (see :attr:`failure`).
            SpoolError: the spool cannot be written (full disk...); the event was not queued.
        """
        payload = event_json(camera_id, event)
        with self._state:
            if self._closed:
                raise OutputClosedError(f"webhook output to {self.config.safe_url} is closed")
            if self._failure is not None:
                raise self._failure
        self._spool.append(payload, key=uuid.uuid4().hex)
        with self._state:
            self._wake = True
            self._state.notify_all()

    @property
    def pending(self) -> int:
        """Events spooled and not yet answered by the endpoint (the one being posted included)."""
        return len(self._spool)

    @property
    def failure(self) -> OutputError | None:
        """The error that stopped delivery for good (a spool that cannot be written), or None."""
        with self._state:
            return self._failure

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def flush(self, timeout_s: float) -> bool:
        """Wait until the spool is empty, delivery has failed, or ``timeout_s`` passes.
        Returns True if every event was answered."""
        return wait_until(self._state, lambda: len(self._spool) == 0,
                          lambda: self._failure is not None or self._stop, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Post what can be posted within about ``timeout_s``, then stop; the rest stays spooled.

        Waits up to ``timeout_s`` for the spool to drain, then stops the delivery thread. A
        POST still under way then gets at most one more second; if it is answered after the
        spool was closed, that event is posted again by the next poster (at least once).
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
        self._thread.join(timeout=1.0)
        left = len(self._spool)
        self._spool.close()
        if left:
            logger.warning("webhook output to %s closed with %d event(s) not yet delivered; "
                           "they stay in %s for the next run", self.config.safe_url, left,
                           self._spool.path)
        else:
            logger.info("webhook output to %s closed; every event delivered",
                        self.config.safe_url)

    def __enter__(self) -> WebhookPoster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- delivery thread ------------------------------------------------------------------

    def _stopping(self) -> bool:
        with self._state:
            return self._stop

    def _sleep(self, delay_s: float) -> None:
        """Sleep ``delay_s`` or until asked to stop."""
        deadline = time.monotonic() + delay_s
        with self._state:
            while not self._stop:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._state.wait(remaining)

    def _run(self) -> None:
        try:
            self._deliver()
        except OutputClosedError as error:  # the spool closed under a POST that outlived close()
            if not self._stopping():
                self._fail(error)
        except OutputError as error:
            self._fail(error)
        except Exception as error:  # a bug: keep the traceback, and say delivery stopped
            logger.exception("webhook delivery thread for %s stopped", self.config.safe_url)
            self._fail(OutputError(f"webhook delivery to {self.config.safe_url} stopped: "
                                   f"{error!r}"))

    def _fail(self, error: OutputError) -> None:
        with self._state:
            if self._failure is None:
                self._failure = error
                logger.error("%s", error)
            self._state.notify_all()

    def _deliver(self) -> None:
        """Post the oldest spooled event until answered (see the module docstring's rules)."""
        config = self.config
        retries = 0
        failing_since: float | None = None
        while not self._stopping():
            items = self._spool.peek(1)
            if not items:
                with self._state:
                    if not (self._wake or self._stop):
                        self._state.wait(0.5)
                    self._wake = False
                continue
            item = items[0]
            outcome, detail, retry_after_s = self._post(item)
            if outcome is _Outcome.RETRY:
                if config.max_retries is not None and retries >= config.max_retries:
                    logger.error("webhook %s: dropping an event after %d retries (%s): %s",
                                 config.safe_url, retries, detail, _preview(item.payload))
                    retries = 0
                    self._acknowledge(item)
                    continue
                else:
                    delay_s = min(config.backoff_max_s, config.backoff_initial_s * 2 ** retries)
                    if retry_after_s is not None:
                        delay_s = min(config.backoff_max_s, max(delay_s, retry_after_s))
                    if failing_since is None:
                        failing_since = time.monotonic()
                        logger.warning("webhook %s: %s; retrying with backoff up to %g s, "
                                       "events are spooled meanwhile", config.safe_url, detail,
                                       config.backoff_max_s)
                    else:
                        logger.debug("webhook %s: %s; retry %d in %.2f s", config.safe_url,
                                     detail, retries + 1, delay_s)
                    retries += 1
                    self._sleep(delay_s)
                    continue
            elif outcome is _Outcome.REFUSED:
                logger.error("webhook %s refused an event with %s; it is dropped (4xx other "
                             "than 408/429 is not retried): %s", config.safe_url, detail,
                             _preview(item.payload))
            if failing_since is not None:
                logger.info("webhook %s answering again after %.1f s; %d event(s) to post",
                            config.safe_url, time.monotonic() - failing_since,
                            len(self._spool) - 1)
                failing_since = None
            retries = 0
            self._acknowledge(item)

    def _acknowledge(self, item: SpoolItem) -> None:
        """Remove an answered (or dropped) event from the spool; wake :meth:`flush`."""
        self._spool.ack(item.id)
        with self._state:
            self._state.notify_all()

    def _post(self, item: SpoolItem) -> tuple[_Outcome, str, float | None]:
        """POST one event. Returns the outcome, a description for the log, and the
        ``Retry-After`` in seconds when the answer had one."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **self.config.headers, "Idempotency-Key": item.key}
        request = urllib.request.Request(self.config.url, data=item.payload, headers=headers,
                                         method="POST")
        try:
            with self._opener.open(request, timeout=self.config.timeout_s) as response:
                response.read()
                status = int(response.status)
                body = b""
                retry_after = None
        except urllib.error.HTTPError as error:
            status = int(error.code)
            try:
                body = error.read(_BODY_IN_LOG_CHARS)
            except (OSError, http.client.HTTPException):
                body = b""
            retry_after = error.headers.get("Retry-After") if error.headers else None
            location = error.headers.get("Location") if error.headers else None
            error.close()
            if 300 <= status < 400:
                return _Outcome.RETRY, f"HTTP {status} redirect to {location!r} (not followed: " \
                                       f"set the url to the final address)", None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
            reason = getattr(error, "reason", error)
            return _Outcome.RETRY, f"cannot reach it ({reason})", None
        if 200 <= status < 300:
            return _Outcome.DELIVERED, f"HTTP {status}", None
        detail = f"HTTP {status}"
        text = body.decode("utf-8", "replace").strip()
        if text:
            detail += f" ({text[:_BODY_IN_LOG_CHARS]!r})"
        if not is_retryable_status(status):
            return _Outcome.REFUSED, detail, None
        return _Outcome.RETRY, detail, _retry_after_s(retry_after)


def _retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds, when given as a number of seconds (dates are ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _preview(payload: bytes) -> str:
    text = payload.decode("utf-8", "replace")
    return text if len(text) <= 500 else text[:500] + "..."
