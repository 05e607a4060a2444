"""Registry of the official YOLOv7 release checkpoints, resolved in a user cache directory.

``resolve_weights("yolov7-tiny")`` returns the path of the cached release file, downloading it on
first use from the official GitHub release (``WongKinYiu/yolov7``, tag ``v0.1``) with a progress
bar. A download is streamed to a temporary file in the cache directory, its size and sha256 are
checked, and only then is it renamed into place with ``os.replace`` (atomic on POSIX and
Windows), so the cache never holds a partial or corrupt file under the final name.

Time limits: ``timeout_s`` bounds connecting and each read; ``download_timeout_s`` bounds the
whole transfer and ``min_rate_bytes_per_s`` its average rate over each :data:`RATE_WINDOW_S`
window, so that a server trickling bytes cannot hold the program forever. Both are checked after
each read, so a transfer ends at most ``timeout_s`` after its deadline.

Checksums: the sha256 and size of ``yolov7-tiny.pt`` and ``yolov7.pt`` are known and enforced.
For the other release files no checksum is recorded here; they are still downloaded, and a
WARNING logs the sha256 computed from the download so that it can be compared with a trusted
source (and added to the registry).

Configuration (environment):

* ``YOLOV7_TRACK_CACHE`` -- cache directory (default ``~/.cache/yolov7-track``);
* ``YOLOV7_TRACK_WEIGHTS_URL`` -- base URL that replaces the official release URL (a mirror;
  ``<base>/<filename>`` is fetched). The ``base_url`` argument of :func:`resolve_weights` wins
  over it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from detector.errors import CheckpointError, DetectorConfigError, DownloadError, UnknownModelError

LOGGER = logging.getLogger(__name__)

OFFICIAL_RELEASE_URL = "https://github.com/WongKinYiu/yolov7/releases/download/v0.1"
CACHE_ENV_VAR = "YOLOV7_TRACK_CACHE"
WEIGHTS_URL_ENV_VAR = "YOLOV7_TRACK_WEIGHTS_URL"
DEFAULT_TIMEOUT_S = 30.0
#: Whole-transfer deadline, seconds: generous, since the largest release files are hundreds of
#: MB to over a GB (1.2 GB in an hour is 330 kB/s); the rate check below catches a stalled
#: transfer much earlier.
DEFAULT_DOWNLOAD_TIMEOUT_S = 3600.0
#: Slowest average rate accepted over a :data:`RATE_WINDOW_S` window, bytes per second (10 kB/s:
#: a 12 MB yolov7-tiny would take 20 minutes; anything slower is a stalled or hostile server).
MIN_DOWNLOAD_RATE_BYTES_PER_S = 10_000.0
#: Length of the window over which the rate is measured, seconds (absorbs short stalls).
RATE_WINDOW_S = 60.0
CHUNK_BYTES = 1 << 20
OFFICIAL_LICENCE = (
    "GPL-3.0 (released with WongKinYiu/yolov7, release v0.1); trained on MS COCO 2017 "
    "(annotations CC BY 4.0, images under their Flickr licences)"
)
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_SIDECAR_SUFFIX = ".sha256.json"


@dataclass(frozen=True)
class WeightsRecord:
    """One downloadable checkpoint.

    Attributes:
        name: registry name (``"yolov7-tiny"``); unique in a registry.
        filename: file name in the release and in the cache (``"yolov7-tiny.pt"``).
        arch: architecture name for ``create_model`` (``"yolov7-tiny"``).
        img_size: letterbox size the checkpoint was trained/evaluated at, pixels (640 or 1280).
        form: ``"deploy"`` (release file meant for inference) or ``"training"`` (the
            ``*_training.pt`` files published for fine-tuning; IDetect/IAuxDetect heads).
            Informative: the head form actually stored is read from the file.
        sha256: lowercase hex sha256 of the file, or ``None`` when not known (download then
            logs a WARNING with the computed hash).
        size_bytes: exact file size in bytes, or ``None`` when not known.
        url: download URL; defaults to ``<OFFICIAL_RELEASE_URL>/<filename>``.
        licence: licence/provenance note of the weights.
        metrics: published accuracy, ``((metric, value), ...)``; for the official files the
            COCO test-dev AP@0.5:0.95 and AP@0.5 in percent from the official README.
    """

    name: str
    filename: str
    arch: str
    img_size: int
    form: str = "deploy"
    sha256: str | None = None
    size_bytes: int | None = None
    url: str = ""
    licence: str = OFFICIAL_LICENCE
    metrics: tuple[tuple[str, float], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name or not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"invalid weights record name/filename: {self.name!r} / {self.filename!r}")
        if self.form not in ("deploy", "training"):
            raise ValueError(f"{self.name}: form must be 'deploy' or 'training', got {self.form!r}")
        if self.sha256 is not None and not _SHA256_PATTERN.fullmatch(self.sha256):
            raise ValueError(f"{self.name}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.size_bytes is not None and self.size_bytes <= 0:
            raise ValueError(f"{self.name}: size_bytes must be positive, got {self.size_bytes}")
        if self.img_size <= 0:
            raise ValueError(f"{self.name}: img_size must be positive, got {self.img_size}")
        if not self.url:
            object.__setattr__(self, "url", f"{OFFICIAL_RELEASE_URL}/{self.filename}")


class WeightsRegistry:
    """Name -> :class:`WeightsRecord`, in registration order. Duplicate names are refused."""

    def __init__(self, records: Iterable[WeightsRecord] = ()) -> None:
        self._records: dict[str, WeightsRecord] = {}
        for record in records:
            self.register(record)

    def register(self, record: WeightsRecord) -> None:
        """Add ``record``; raises ``ValueError`` if its name is already registered."""
        if record.name in self._records:
            raise ValueError(f"weights name {record.name!r} is already registered")
        self._records[record.name] = record

    def get(self, name: str) -> WeightsRecord:
        """The record called ``name``; raises :class:`UnknownModelError` listing the known names."""
        try:
            return self._records[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown weights name {name!r}; known: {', '.join(self._records)}. To use a local "
                "checkpoint pass its path instead (e.g. --weights /path/to/model.pt)."
            ) from None

    def names(self) -> list[str]:
        return list(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[WeightsRecord]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


def _official_records() -> list[WeightsRecord]:
    def ap(test: float, test50: float) -> tuple[tuple[str, float], ...]:
        return (("coco_test_ap50_95", test), ("coco_test_ap50", test50))

    deploy = [
        WeightsRecord(
            "yolov7-tiny", "yolov7-tiny.pt", "yolov7-tiny", 640,
            sha256="0fa1423606133c06362ec716029dade1169d5631e83195b75d8efa66d2ee0b77",
            size_bytes=12_639_769,
        ),
        WeightsRecord(
            "yolov7", "yolov7.pt", "yolov7", 640,
            sha256="d1ac3c74eb96a3eec77949c0f37a06bc272756606ff011d9353f7abff4e0c71d",
            size_bytes=75_587_165, metrics=ap(51.4, 69.7),
        ),
        WeightsRecord("yolov7x", "yolov7x.pt", "yolov7x", 640, metrics=ap(53.1, 71.2)),
        WeightsRecord("yolov7-w6", "yolov7-w6.pt", "yolov7-w6", 1280, metrics=ap(54.9, 72.6)),
        WeightsRecord("yolov7-e6", "yolov7-e6.pt", "yolov7-e6", 1280, metrics=ap(56.0, 73.5)),
        WeightsRecord("yolov7-d6", "yolov7-d6.pt", "yolov7-d6", 1280, metrics=ap(56.6, 74.0)),
        WeightsRecord("yolov7-e6e", "yolov7-e6e.pt", "yolov7-e6e", 1280, metrics=ap(56.8, 74.4)),
    ]
    training = [
        WeightsRecord(f"{arch}_training", f"{arch}_training.pt", arch, size, form="training")
        for arch, size in (
            ("yolov7", 640), ("yolov7x", 640), ("yolov7-w6", 1280), ("yolov7-e6", 1280),
            ("yolov7-d6", 1280), ("yolov7-e6e", 1280),
        )
    ]
    return deploy + training


#: The official release checkpoints (deploy files, then the ``*_training`` files).
REGISTRY = WeightsRegistry(_official_records())


def available_weights() -> list[str]:
    """Names accepted by :func:`resolve_weights` with the default registry."""
    return REGISTRY.names()


def cache_dir() -> Path:
    """``$YOLOV7_TRACK_CACHE`` or ``~/.cache/yolov7-track`` (not created here)."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "yolov7-track"


def weights_url(record: WeightsRecord, base_url: str | None = None) -> str:
    """URL to fetch ``record`` from: ``<base_url>/<filename>`` when a base URL is given (argument
    first, then ``$YOLOV7_TRACK_WEIGHTS_URL``), else ``record.url``."""
    base = base_url or os.environ.get(WEIGHTS_URL_ENV_VAR)
    return f"{base.rstrip('/')}/{record.filename}" if base else record.url


def resolve_weights(
    name: str,
    *,
    download: bool = True,
    cache_directory: str | Path | None = None,
    base_url: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool = True,
    registry: WeightsRegistry | None = None,
    download_timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
    min_rate_bytes_per_s: float = MIN_DOWNLOAD_RATE_BYTES_PER_S,
) -> Path:
    """Path of the checkpoint registered as ``name``, downloading it into the cache if needed.

    A cached file is used when its size matches and, for records with a sha256, its hash has
    been verified (once; the verified hash, size and mtime are kept in a
    ``<filename>.sha256.json`` sidecar so later calls only compare size and mtime). A cached
    file that fails the check is downloaded again (WARNING) or, with ``download=False``,
    refused.

    Args:
        name: registry name, e.g. ``"yolov7-tiny"``.
        download: allow a download when the file is not cached.
        cache_directory: where files are kept; default :func:`cache_dir`.
        base_url: mirror base URL (see :func:`weights_url`).
        timeout_s: socket timeout for connecting and for each read, seconds.
        progress: show a tqdm progress bar (stderr) while downloading.
        registry: where ``name`` is looked up; default :data:`REGISTRY`.
        download_timeout_s: deadline of the whole download, seconds (checked after each read).
        min_rate_bytes_per_s: slowest average rate accepted over each :data:`RATE_WINDOW_S`
            window; ``0`` disables the rate check.

    Raises:
        UnknownModelError: ``name`` is not registered.
        DownloadError: not cached and ``download=False``; offline/unreachable host, HTTP error,
            timeout, deadline passed, transfer too slow, cut-off transfer, size or sha256
            mismatch. No partial file is left behind; the message says how to pass a local
            file instead.
        CheckpointError: a corrupt cached file with ``download=False``.
        DetectorConfigError: a non-positive ``timeout_s`` or ``download_timeout_s``, or a
            negative ``min_rate_bytes_per_s`` (a ``ValueError``).
    """
    for option, value in (("timeout_s", timeout_s), ("download_timeout_s", download_timeout_s)):
        if not value > 0:
            raise DetectorConfigError(f"{option} must be positive, got {value}")
    if not min_rate_bytes_per_s >= 0:
        raise DetectorConfigError(f"min_rate_bytes_per_s must be >= 0, got {min_rate_bytes_per_s}")
    record = (registry or REGISTRY).get(name)
    directory = Path(cache_directory) if cache_directory is not None else cache_dir()
    target = directory / record.filename
    if target.is_file():
        problem = _cached_file_problem(target, record)
        if problem is None:
            return target
        if not download:
            raise CheckpointError(
                f"cached weights {target} are corrupt ({problem}); delete the file to download it "
                "again, or pass a good local copy with --weights /path/to/" + record.filename
            )
        LOGGER.warning("cached weights %s are corrupt (%s); downloading them again", target, problem)
    elif not download:
        raise DownloadError(
            f"weights {name!r} are not in the cache ({target}) and downloading is disabled; "
            f"{_local_file_hint(record, directory)}"
        )
    url = weights_url(record, base_url)
    limits = _TransferLimits(timeout_s, download_timeout_s, min_rate_bytes_per_s)
    _download(url, target, record, limits=limits, progress=progress)
    return target


# --------------------------------------------------------------------------------------------
# Cache verification
# --------------------------------------------------------------------------------------------


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + _SIDECAR_SUFFIX)


def _cached_file_problem(target: Path, record: WeightsRecord) -> str | None:
    """``None`` when the cached file is good, else what is wrong with it."""
    stat = target.stat()
    if record.size_bytes is not None and stat.st_size != record.size_bytes:
        return f"{stat.st_size} bytes, expected {record.size_bytes}"
    if record.sha256 is None:
        return None
    if _read_sidecar(target) == {"sha256": record.sha256, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
        return None  # verified before and not modified since
    actual = file_sha256(target)
    if actual != record.sha256:
        return f"sha256 {actual}, expected {record.sha256}"
    _write_sidecar(target, actual)
    return None


def _read_sidecar(target: Path) -> dict[str, object] | None:
    try:
        return json.loads(_sidecar(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_sidecar(target: Path, sha256: str) -> None:
    stat = target.stat()
    content = {"sha256": sha256, "size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        _sidecar(target).write_text(json.dumps(content), encoding="utf-8")
    except OSError as exc:  # a read-only cache still works, it is just hashed again next time
        LOGGER.warning("cannot record the verified sha256 of %s (%s)", target, exc)


def file_sha256(path: str | Path) -> str:
    """Lowercase hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _local_file_hint(record: WeightsRecord, directory: Path) -> str:
    return (
        f"download {record.filename} yourself ({record.url}) and pass it with "
        f"--weights /path/to/{record.filename}, or copy it to {directory / record.filename}"
    )


@dataclass(frozen=True)
class _TransferLimits:
    timeout_s: float
    download_timeout_s: float
    min_rate_bytes_per_s: float


class _TransferWatch:
    """Deadline and minimum rate of one transfer; :meth:`check` after each read raises
    :class:`DownloadError` (naming the URL and the time) when either is broken."""

    def __init__(self, url: str, limits: _TransferLimits, hint: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._url, self._limits, self._hint, self._clock = url, limits, hint, clock
        self._started = self._window_started = clock()
        self._window_bytes = 0

    def check(self, received: int) -> None:
        """``received``: bytes received so far."""
        now = self._clock()
        elapsed = now - self._started
        if elapsed > self._limits.download_timeout_s:
            raise DownloadError(
                f"downloading {self._url} took longer than {self._limits.download_timeout_s:g} s "
                f"(download_timeout_s; {received} bytes in {elapsed:.1f} s); {self._hint}"
            )
        window = now - self._window_started
        if window >= RATE_WINDOW_S:
            rate = (received - self._window_bytes) / window
            if rate < self._limits.min_rate_bytes_per_s:
                raise DownloadError(
                    f"downloading {self._url} is too slow: {rate:.0f} bytes/s over the last {window:.1f} s, "
                    f"below the minimum of {self._limits.min_rate_bytes_per_s:g} (min_rate_bytes_per_s; "
                    f"{received} bytes in {elapsed:.1f} s); {self._hint}"
                )
            self._window_started, self._window_bytes = now, received


def _download(url: str, target: Path, record: WeightsRecord, *, limits: _TransferLimits, progress: bool) -> None:
    """Stream ``url`` to a temporary file beside ``target``, verify, then ``os.replace``."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise DownloadError(f"cannot write to the weights cache {target.parent}: {exc}") from exc
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as output:
            sha256, size = _stream(url, output, record, target.parent, limits=limits, progress=progress)
            output.flush()
            os.fsync(output.fileno())
        _verify_download(url, record, sha256, size, target.parent)
        os.replace(temporary, target)
    except BaseException:  # KeyboardInterrupt included: never leave a partial file behind
        temporary.unlink(missing_ok=True)
        raise
    if record.sha256 is not None:
        _write_sidecar(target, sha256)
    LOGGER.info("downloaded %s (%d bytes, sha256 %s) to %s", url, size, sha256, target)


def _stream(
    url: str, output: BinaryIO, record: WeightsRecord, directory: Path, *, limits: _TransferLimits,
    progress: bool,
) -> tuple[str, int]:
    """Copy the body of ``url`` into ``output``; returns (sha256, bytes written).

    ``read1`` returns whatever has arrived (``read(n)`` would wait for all ``n`` bytes, and a
    trickling server could keep it waiting past any deadline)."""
    hint = _local_file_hint(record, directory)
    request = urllib.request.Request(url, headers={"User-Agent": "yolov7-track"})
    digest = hashlib.sha256()
    received = 0
    timeout_s = limits.timeout_s
    watch = _TransferWatch(url, limits, hint)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            watch.check(received)
            declared = _declared_length(response, url)
            if declared is not None and record.size_bytes is not None and declared != record.size_bytes:
                raise DownloadError(
                    f"{url} announces {declared} bytes but {record.name} is {record.size_bytes} bytes; "
                    f"wrong file or mirror. {hint}"
                )
            with tqdm(
                total=declared, unit="B", unit_scale=True, unit_divisor=1024,
                desc=record.filename, disable=not progress, leave=False,
            ) as bar:
                while chunk := response.read1(CHUNK_BYTES):
                    watch.check(received + len(chunk))
                    digest.update(chunk)
                    output.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if record.size_bytes is not None and received > record.size_bytes:
                        raise DownloadError(
                            f"{url} sent more than the {record.size_bytes} bytes of {record.name}; "
                            f"wrong file or mirror. {hint}"
                        )
            if declared is not None and received != declared:
                raise DownloadError(
                    f"the transfer of {url} was cut off after {received} of {declared} bytes; try "
                    f"again, or {hint}"
                )
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}. {hint}") from exc
    except http.client.IncompleteRead as exc:
        raise DownloadError(
            f"the transfer of {url} was cut off after {received + len(exc.partial)} bytes "
            f"({exc.expected} more expected); try again, or {hint}"
        ) from exc
    except (TimeoutError, socket.timeout) as exc:
        raise DownloadError(f"downloading {url} timed out after {timeout_s} s; {hint}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise DownloadError(f"connecting to {url} timed out after {timeout_s} s; {hint}") from exc
        raise DownloadError(
            f"cannot reach {url} ({exc.reason}); you may be offline or the host is unreachable. {hint}"
        ) from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"downloading {url} failed after {received} bytes ({exc!r}); {hint}") from exc
    return digest.hexdigest(), received


def _declared_length(response: http.client.HTTPResponse, url: str) -> int | None:
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise DownloadError(f"{url} sent an invalid Content-Length {value!r}") from None


def _verify_download(url: str, record: WeightsRecord, sha256: str, size: int, directory: Path) -> None:
    hint = _local_file_hint(record, directory)
    if record.size_bytes is not None and size != record.size_bytes:
        raise DownloadError(
            f"{url} gave {size} bytes, expected {record.size_bytes}; the download was discarded. {hint}"
        )
    if record.sha256 is None:
        LOGGER.warning(
            "no known sha256 for %s: the file downloaded from %s has sha256 %s (%d bytes); compare "
            "it with a trusted source before relying on it",
            record.name, url, sha256, size,
        )
    elif sha256 != record.sha256:
        raise DownloadError(
            f"sha256 of {record.filename} from {url} is {sha256}, expected {record.sha256}; the "
            f"download was discarded (corrupt transfer or tampered file). {hint}"
        )


__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_DOWNLOAD_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "MIN_DOWNLOAD_RATE_BYTES_PER_S",
    "RATE_WINDOW_S",
    "OFFICIAL_RELEASE_URL",
    "REGISTRY",
    "WEIGHTS_URL_ENV_VAR",
    "WeightsRecord",
    "WeightsRegistry",
    "available_weights",
    "cache_dir",
    "file_sha256",
    "resolve_weights",
    "weights_url",
]
