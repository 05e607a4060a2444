"""Loading MOTChallenge 2015 (MOT15) sequences for the tracker benchmark and regression tests.

The MOT text format (MOTChallenge devkit, Milan et al. 2016, "MOT16: A Benchmark for Multi-Object
Tracking", section 3.3) has one row per box: ``frame, id, left, top, width, height, conf, x, y, z``
with 1-based frame numbers and pixel units. Detections (``det/det.txt``) carry ``id = -1`` and the
detector score in ``conf``; ground truth (``gt/gt.txt``) carries ``conf = 0`` for rows that must be
ignored during scoring.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOT15_TRAIN_SEQUENCES = (
    "ADL-Rundle-6",
    "ADL-Rundle-8",
    "ETH-Bahnhof",
    "ETH-Pedcross2",
    "ETH-Sunnyday",
    "KITTI-13",
    "KITTI-17",
    "PETS09-S2L1",
    "TUD-Campus",
    "TUD-Stadtmitte",
    "Venice-2",
)

# Column indices of the MOT text format.
COL_FRAME, COL_ID, COL_LEFT, COL_TOP, COL_WIDTH, COL_HEIGHT, COL_CONF = range(7)


@dataclass(frozen=True)
class MotSequence:
    """One MOT sequence: metadata from ``seqinfo.ini`` and its public detections per frame.

    ``detections_per_frame[k]`` holds frame ``k + 1`` as a float64 array of shape (n, 5):
    ``x1, y1, x2, y2`` in pixels and the detector score.
    """

    name: str
    directory: Path
    frame_rate_hz: float
    width_px: int
    height_px: int
    length_frames: int
    detections_per_frame: tuple[np.ndarray, ...]

    @property
    def gt_path(self) -> Path:
        return self.directory / "gt" / "gt.txt"


def read_mot_text(path: Path) -> np.ndarray:
    """Read a MOT text file into a float64 array of shape (n, 10) (no rows -> shape (0, 10))."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 10), dtype=np.float64)
    return rows


def _read_seqinfo(directory: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    if not parser.read(directory / "seqinfo.ini"):
        raise FileNotFoundError(f"no seqinfo.ini in {directory}")
    return parser["Sequence"]


def load_sequence(directory: Path) -> MotSequence:
    """Load one sequence directory (``seqinfo.ini`` and ``det/det.txt``)."""
    info = _read_seqinfo(directory)
    length = int(info["seqLength"])
    rows = read_mot_text(directory / "det" / "det.txt")
    frames = rows[:, COL_FRAME].astype(np.int64)
    boxes = np.empty((len(rows), 5), dtype=np.float64)
    boxes[:, 0] = rows[:, COL_LEFT]
    boxes[:, 1] = rows[:, COL_TOP]
    boxes[:, 2] = rows[:, COL_LEFT] + rows[:, COL_WIDTH]
    boxes[:, 3] = rows[:, COL_TOP] + rows[:, COL_HEIGHT]
    boxes[:, 4] = rows[:, COL_CONF]
    order = np.argsort(frames, kind="stable")
    frames, boxes = frames[order], boxes[order]
    bounds = np.searchsorted(frames, np.arange(1, length + 2))
    per_frame = tuple(boxes[bounds[k] : bounds[k + 1]] for k in range(length))
    return MotSequence(
        name=info["name"],
        directory=directory,
        frame_rate_hz=float(info["frameRate"]),
        width_px=int(info["imWidth"]),
        height_px=int(info["imHeight"]),
        length_frames=length,
        detections_per_frame=per_frame,
    )


def load_sequences(root: Path, names: tuple[str, ...] = MOT15_TRAIN_SEQUENCES) -> list[MotSequence]:
    """Load the named sequences under ``root`` (e.g. ``.../MOT15/train``)."""
    return [load_sequence(root / name) for name in names]
