"""Typed errors of the detector package. Every message names the file or option at fault and
what to do about it."""

from __future__ import annotations

from yolov7_track.errors import Yolov7TrackError


class DetectorError(Yolov7TrackError):
    """Base class of every error raised by :mod:`detector`."""


class DetectorConfigError(DetectorError, ValueError):
    """An invalid detector option, or one the model or machine cannot honour."""


class UnknownModelError(DetectorError, KeyError):
    """An architecture or registry name that yolov7-track does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(DetectorError):
    """A checkpoint file that cannot be read, or whose tensors do not fit the architecture."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that references a global outside the allow-list; nothing in it was executed."""


class WeightsMismatchError(CheckpointError):
    """State-dict keys or shapes that do not match the model they are loaded into."""


class DownloadError(DetectorError):
    """A registry download that failed (offline, HTTP error, cut-off transfer, sha256 mismatch)."""


class UnknownArchitectureError(CheckpointError, UnknownModelError):
    """A weights file naming an architecture this version does not know: a file that cannot be
    loaded (:class:`CheckpointError`) because of an unknown name (:class:`UnknownModelError`)."""
