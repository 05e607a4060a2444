"""Proposals for a clip: detector + tracker pre-labels, interpolation between keyframes, and a
corrected box carried forward by a Kalman filter following the detections.

Every function that writes to a :class:`LabelStore` goes through
:meth:`LabelStore.apply_proposals`: proposals replace proposals, and a verified box or a
verified frame is never overwritten. Each call is one undo step.

The heavy part (running the detector) is :func:`propose_tracks`, a plain generator that does
not touch the store, so a GUI runs it in a worker and applies its output on the GUI thread with
:func:`apply_prelabels`. Frames are ``(frame_index, image)`` pairs, images ``(H, W, 3)`` uint8
**BGR**; boxes are float pixels ``x1, y1, x2, y2`` of the original frame.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from app.labelling.errors import LabelValidationError
from app.labelling.store import BoxOrigin, LabelBox, LabelStore, ProposalResult
from tracker import kalman_xyah
from tracker.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah

__all__ = [
    "CarryConfig",
    "FrameProposals",
    "PrelabelConfig",
    "PrelabelRun",
    "ProposalBox",
    "apply_prelabels",
    "carry_forward",
    "follow_box",
    "interpolate_all",
    "interpolate_track",
    "interpolate_xyxy",
    "iter_clip_frames",
    "prelabel",
    "propose_tracks",
]

logger = logging.getLogger(__name__)

Detector = Callable[[np.ndarray], sv.Detections]
"""``detector(image_bgr (H, W, 3) uint8) -> supervision.Detections`` (``xyxy`` pixels,
``confidence``; ``class_id`` and ``data["class_name"]`` when known), as :class:`detector.Detector`."""

_ROW_KEY = "_labelling_row"


# --------------------------------------------------------------------------- interpolation

def _xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, dtype=np.float64)
    return np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], axis=-1)


def _cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[..., 2:] / 2
    return np.concatenate([cxcywh[..., :2] - half, cxcywh[..., :2] + half], axis=-1)


def interpolate_xyxy(xyxy_a: Sequence[float] | np.ndarray, frame_a: int, xyxy_b: Sequence[float] | np.ndarray,
                     frame_b: int, frames: Iterable[int]) -> np.ndarray:
    """Boxes on ``frames`` between two keyframes, linear in box centre and size.

    ``t = (frame - frame_a) / (frame_b - frame_a)``; centre ``c = (1 - t) c_a + t c_b`` and size
    ``s = (1 - t) s_a + t s_b`` (width and height). The same interpolation as CVAT's and Label
    Studio's for rectangles; it does not drift, as it depends on the two keyframes only.

    Args:
        xyxy_a, xyxy_b: ``(4,)`` pixels of the keyframe boxes.
        frame_a, frame_b: their frame indices, ``frame_a != frame_b``.
        frames: frame indices to fill (any values; outside ``[frame_a, frame_b]`` extrapolates).

    Returns:
        float64 ``(n, 4)`` xyxy pixels, one row per frame.
    """
    if frame_a == frame_b:
        raise LabelValidationError(f"interpolation needs two different keyframes, got frame {frame_a} twice")
    t = (np.asarray(list(frames), dtype=np.float64) - frame_a) / (frame_b - frame_a)
    a, b = _xyxy_to_cxcywh(xyxy_a), _xyxy_to_cxcywh(xyxy_b)
    return _cxcywh_to_xyxy((1.0 - t)[:, None] * a[None, :] + t[:, None] * b[None, :])


def _without_duplicates(store: LabelStore, boxes: Sequence[LabelBox], duplicate_iou: float) -> list[tuple[int, int]]:
    """Keys of other tracks' proposals that overlap a new proposal by ``IoU >= duplicate_iou``
    on the same frame (the same object proposed twice; the newer, better-informed one wins)."""
    doomed = []
    for box in boxes:
        others = [b for b in store.boxes(box.frame_index) if b.track_id != box.track_id and not b.verified]
        if not others:
            continue
        iou = iou_matrix(box.xyxy_array[None], np.stack([b.xyxy_array for b in others]))[0]
        doomed += [b.key for b, v in zip(others, iou) if v >= duplicate_iou]
    return doomed


def interpolate_track(store: LabelStore, track_id: int, *, first_frame: int | None = None,
                      last_frame: int | None = None, duplicate_iou: float = 0.5) -> ProposalResult:
    """Fill the gaps between consecutive **verified** boxes of one track with interpolated
    proposals (:func:`interpolate_xyxy`; the class of the earlier keyframe).

    Only gaps with both keyframes inside ``[first_frame, last_frame]`` are filled. Proposals of
    the track in a gap are replaced; other tracks' proposals overlapping an interpolated box by
    ``IoU >= duplicate_iou`` are removed; verified boxes and verified frames are kept. One undo step.
    """
    keys = [(f, b) for f, b in store.track(track_id).items() if b.verified
            and (first_frame is None or f >= first_frame) and (last_frame is None or f <= last_frame)]
    new: list[LabelBox] = []
    for (f0, b0), (f1, b1) in zip(keys, keys[1:]):
        if f1 - f0 < 2:
            continue
        frames = range(f0 + 1, f1)
        for frame, xyxy in zip(frames, interpolate_xyxy(b0.xyxy, f0, b1.xyxy, f1, frames)):
            new.append(LabelBox(frame, track_id, b0.class_name, tuple(xyxy), verified=False,
                                origin=BoxOrigin.INTERPOLATED))
    new = [b for b in new if not store.is_frame_verified(b.frame_index)]
    return store.apply_proposals(new, remove=_without_duplicates(store, new, duplicate_iou),
                                 description=f"interpolate track {track_id}")


def interpolate_all(store: LabelStore, *, first_frame: int | None = None, last_frame: int | None = None,
                    duplicate_iou: float = 0.5) -> ProposalResult:
    """:func:`interpolate_track` for every track, as one undo step."""
    totals = [0, 0, 0, 0]
    with store.transaction("interpolate tracks"):
        for track_id in store.track_ids():
            r = interpolate_track(store, track_id, first_frame=first_frame, last_frame=last_frame,
                                  duplicate_iou=duplicate_iou)
            totals = [t + v for t, v in zip(totals, (r.added, r.replaced, r.removed, r.skipped_verified))]
    return ProposalResult(*totals)


# --------------------------------------------------------------------------- carry forward

@dataclass(frozen=True)
class CarryConfig:
    """How :func:`follow_box` / :func:`carry_forward` follow a corrected box.

    Attributes:
        num_frames: frames after the corrected one to propose boxes on.
        min_iou: smallest IoU between the Kalman-predicted box and a detection for the
            detection to continue the track.
        max_coast_frames: consecutive frames without a matching detection on which the predicted
            box is still proposed; after that the track stops.
        keep_correction: apply the user's correction to the followed detections: the corrected
            box's centre offset (in units of the detection's size) and log size ratio relative to
            the detection it replaced (IoU >= ``seed_match_iou`` on the corrected frame).
        seed_match_iou: IoU for the detection that the corrected box replaced.
        duplicate_iou: other tracks' proposals overlapping a carried box by at least this IoU are
            removed (the same object proposed twice); detections overlapping another track's
            verified box by at least this IoU are not followed.
        stop_at_verified: stop before the track's next verified box and at a verified frame where
            the track has no box (the user said the object is not there).
        velocity_window_frames: if the track has a verified box at most this many frames before
            the corrected one, the filter starts with the constant velocity between the two
            (``(xyah_seed - xyah_prev) / frames``), so that coasting extrapolates the motion the
            user labelled instead of standing still; 0 starts at rest (as a new tracker track).
    """

    num_frames: int = 20
    min_iou: float = 0.3
    max_coast_frames: int = 5
    keep_correction: bool = True
    seed_match_iou: float = 0.5
    duplicate_iou: float = 0.5
    stop_at_verified: bool = True
    velocity_window_frames: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise LabelValidationError(f"num_frames must be an integer >= 1, got {self.num_frames!r}")
        if not isinstance(self.velocity_window_frames, int) or self.velocity_window_frames < 0:
            raise LabelValidationError(f"velocity_window_frames must be an integer >= 0, got {self.velocity_window_frames!r}")
        if not isinstance(self.max_coast_frames, int) or self.max_coast_frames < 0:
            raise LabelValidationError(f"max_coast_frames must be an integer >= 0, got {self.max_coast_frames!r}")
        for name in ("min_iou", "seed_match_iou", "duplicate_iou"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise LabelValidationError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")


def _correction(seed: np.ndarray, detections: np.ndarray, match_iou: float) -> np.ndarray:
    """``(dx/w, dy/h, log(w_s/w_d), log(h_s/h_d))`` of ``seed`` relative to its best-overlapping
    detection (zeros when none overlaps by ``match_iou``)."""
    if len(detections) == 0:
        return np.zeros(4)
    iou = iou_matrix(seed[None], detections)[0]
    best = int(np.argmax(iou))
    if iou[best] < match_iou:
        return np.zeros(4)
    s, d = _xyxy_to_cxcywh(seed), _xyxy_to_cxcywh(detections[best])
    return np.concatenate([(s[:2] - d[:2]) / d[2:], np.log(s[2:] / d[2:])])


def _corrected(detection: np.ndarray, correction: np.ndarray) -> np.ndarray:
    d = _xyxy_to_cxcywh(detection)
    return _cxcywh_to_xyxy(np.concatenate([d[:2] + correction[:2] * d[2:], d[2:] * np.exp(correction[2:])]))


def follow_box(seed_xyxy: Sequence[float] | np.ndarray, detections: Sequence[np.ndarray], config: CarryConfig = CarryConfig(),
               seed_detections: np.ndarray | None = None,
               seed_velocity_xyah: Sequence[float] | np.ndarray | None = None) -> list[np.ndarray]:
    """Follow one box through the next frames' detections (a single-track SORT/ByteTrack step).

    The state is ByteTrack's Kalman filter on ``(x, y, a, h)`` (:mod:`tracker.kalman_xyah`,
    Zhang et al. 2022 after Wojke et al. 2017), initiated at the seed box. On each frame: predict;
    take the detection of largest IoU with the predicted box if it is ``>= min_iou``; the
    proposed box is that detection (with the user's correction applied, see
    :class:`CarryConfig`), and it corrects the filter. Without a match the predicted box is
    proposed for up to ``max_coast_frames`` frames, then following stops.

    Args:
        seed_xyxy: ``(4,)`` the corrected box, pixels.
        detections: per following frame, float ``(m, 4)`` xyxy detection boxes.
        config: thresholds.
        seed_detections: ``(m, 4)`` detections of the corrected frame (for the correction).
        seed_velocity_xyah: ``(4,)`` initial velocity of ``(x, y, a, h)`` per frame (pixels,
            aspect, pixels); ``None`` starts at rest.

    Returns:
        float64 ``(4,)`` boxes for the first ``k <= len(detections)`` frames (shorter when the
        track was lost).
    """
    seed = np.asarray(seed_xyxy, dtype=np.float64).reshape(4)
    correction = np.zeros(4)
    if config.keep_correction and seed_detections is not None:
        correction = _correction(seed, np.asarray(seed_detections, np.float64).reshape(-1, 4), config.seed_match_iou)
    mean, cov = kalman_xyah.initiate(xyxy_to_xyah(seed[None]))
    if seed_velocity_xyah is not None:
        mean[0, kalman_xyah.MEASUREMENT_DIM:] = np.asarray(seed_velocity_xyah, dtype=np.float64).reshape(4)
    out: list[np.ndarray] = []
    coasted = 0
    for boxes in detections:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        mean, cov = kalman_xyah.predict(mean, cov)
        predicted = xyah_to_xyxy(mean[:, :4])[0]
        if not np.isfinite(predicted).all() or predicted[2] <= predicted[0] or predicted[3] <= predicted[1]:
            break
        iou = iou_matrix(predicted[None], boxes)[0] if len(boxes) else np.zeros(0)
        if len(iou) and iou.max() >= config.min_iou:
            box = _corrected(boxes[int(np.argmax(iou))], correction)
            mean, cov = kalman_xyah.update(mean, cov, xyxy_to_xyah(box[None]))
            coasted = 0
        else:
            coasted += 1
            if coasted > config.max_coast_frames:
                break
            box = predicted
        out.append(box)
    return out


def _detection_boxes(value: sv.Detections | np.ndarray | None) -> np.ndarray:
    if value is None:
        return np.zeros((0, 4))
    if isinstance(value, sv.Detections):
        return np.asarray(value.xyxy, dtype=np.float64).reshape(-1, 4)
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


def carry_forward(store: LabelStore, frame_index: int, track_id: int,
                  detections_at: Callable[[int], sv.Detections | np.ndarray | None], config: CarryConfig = CarryConfig(),
                  *, last_frame: int | None = None) -> ProposalResult:
    """Carry the box of ``track_id`` on ``frame_index`` (usually just corrected) forward with
    :func:`follow_box` over the next ``config.num_frames`` frames (not past ``last_frame``),
    writing proposals (origin ``TRACKER``) in one undo step.

    ``detections_at(i)`` gives frame ``i``'s detections (a cache of :func:`propose_tracks`'
    output, or a detector call). Detections that overlap another track's verified box are not
    followed; other tracks' proposals that overlap a carried box are removed; verified boxes
    and frames are never changed (see :class:`CarryConfig` for where following stops).

    Raises:
        UnknownBoxError: no such box.
    """
    seed = store.box(frame_index, track_id)
    end = frame_index + config.num_frames if last_frame is None else min(last_frame, frame_index + config.num_frames)
    frames = list(range(frame_index + 1, end + 1))
    if config.stop_at_verified:
        for i, frame in enumerate(frames):
            own = store.get(frame, track_id)
            if (own is not None and own.verified) or (own is None and store.is_frame_verified(frame)):
                frames = frames[:i]
                break
    per_frame = []
    for frame in frames:
        boxes = _detection_boxes(detections_at(frame))
        taken = [b.xyxy_array for b in store.boxes(frame) if b.verified and b.track_id != track_id]
        if len(boxes) and taken:
            overlap = iou_matrix(boxes, np.stack(taken)).max(axis=1)
            boxes = boxes[overlap < config.duplicate_iou]
        per_frame.append(boxes)
    velocity = None
    earlier = [(f, b) for f, b in store.track(track_id).items()
               if b.verified and frame_index - config.velocity_window_frames <= f < frame_index]
    if earlier:
        f_prev, prev = earlier[-1]
        velocity = (xyxy_to_xyah(seed.xyxy_array[None]) - xyxy_to_xyah(prev.xyxy_array[None]))[0] / (frame_index - f_prev)
    followed = follow_box(seed.xyxy, per_frame, config, _detection_boxes(detections_at(frame_index)), velocity)
    new = [LabelBox(frame, track_id, seed.class_name, tuple(xyxy), verified=False, origin=BoxOrigin.TRACKER)
           for frame, xyxy in zip(frames, followed)]
    return store.apply_proposals(new, remove=_without_duplicates(store, new, config.duplicate_iou),
                                 description=f"carry track {track_id} forward")


# --------------------------------------------------------------------------- pre-labels

class ProposalBox(enum.Enum):
    """Which box a pre-label proposes for a tracked detection."""

    DETECTION = "detection"  # the detector's box (sharper; the tracker only gives the id)
    TRACK = "track"  # the tracker's Kalman-corrected box (smoother)


@dataclass(frozen=True)
class PrelabelConfig:
    """How :func:`propose_tracks` builds proposals.

    Attributes:
        tracker: a name of :data:`tracker.registry.TRACKERS` (``bytetrack``, ``sort``).
        tracker_params: its parameters (:func:`tracker.registry.tracker_parameters`).
        frame_rate: the clip's frames per second (scales the tracker's lifetimes).
        classes: class names to propose (``None``: every class the detector reports).
        box: :class:`ProposalBox`.
    """

    tracker: str = "bytetrack"
    tracker_params: Mapping[str, Any] = field(default_factory=dict)
    frame_rate: float = 30.0
    classes: tuple[str, ...] | None = None
    box: ProposalBox = ProposalBox.DETECTION


@dataclass(frozen=True)
class FrameProposals:
    """One frame's output of :func:`propose_tracks`.

    Attributes:
        frame_index: the frame.
        boxes: proposals (``verified=False``, origin ``DETECTOR``), ids from the tracker.
        detections: the detector's output on the frame after the class filter (keep it for
            :func:`carry_forward`).
    """

    frame_index: int
    boxes: tuple[LabelBox, ...]
    detections: sv.Detections


def _class_names(detections: sv.Detections, names: Sequence[str] | None) -> np.ndarray:
    n = len(detections)
    if "class_name" in detections.data:
        return np.asarray(detections.data["class_name"], dtype=str).reshape(n)
    if detections.class_id is not None and names:
        ids = np.asarray(detections.class_id, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(names)):
            raise LabelValidationError(f"detector class ids {sorted(set(ids.tolist()))} outside its {len(names)} names")
        return np.asarray([names[i] for i in ids], dtype=str).reshape(n)
    return np.full(n, "object")


def propose_tracks(frames: Iterable[tuple[int, np.ndarray]], detector: Detector, config: PrelabelConfig = PrelabelConfig(),
                   *, first_track_id: int = 1, class_names: Sequence[str] | None = None) -> Iterator[FrameProposals]:
    """Run ``detector`` and a fresh tracker (:func:`tracker.registry.make_tracker`) over
    ``frames`` and yield each frame's proposals. Touches no store (run it in a worker).

    Args:
        frames: ``(frame_index, image_bgr)`` in increasing, consecutive order (a gap is passed to
            the tracker as it is: it sees the next frame as the next update).
        detector: see :data:`Detector`.
        config: tracker and class filter.
        first_track_id: the id given to the tracker's first track (use ``store.next_track_id()``
            so that proposals never reuse an existing track's id).
        class_names: the detector's names, for detections without ``data["class_name"]``
            (default: ``detector.names`` when it has them).

    Raises:
        InvalidTrackerConfigError: unknown tracker or parameter.
        LabelValidationError: the detector returned something other than ``sv.Detections``.
    """
    from tracker.registry import make_tracker

    tracker = make_tracker(config.tracker, config.tracker_params, frame_rate=config.frame_rate)
    names = class_names if class_names is not None else getattr(detector, "names", None)
    wanted = None if config.classes is None else set(config.classes)
    for frame_index, image in frames:
        detections = detector(image)
        if not isinstance(detections, sv.Detections):
            raise LabelValidationError(f"the detector returned {type(detections).__name__}, not supervision.Detections")
        labels = _class_names(detections, names)
        keep = np.ones(len(labels), dtype=bool) if wanted is None else np.isin(labels, list(wanted))
        detections, labels = detections[keep], labels[keep]  # a copy: the detector's output stays as it was
        if len(detections) and detections.confidence is None:
            detections.confidence = np.ones(len(detections), dtype=np.float32)
        detections.data[_ROW_KEY] = np.arange(len(detections))
        tracked = tracker.update(detections)
        rows = np.asarray(tracked.data.get(_ROW_KEY, np.zeros(0, int)), dtype=np.int64)
        xyxy = detections.xyxy[rows] if config.box is ProposalBox.DETECTION else tracked.xyxy
        boxes = tuple(
            LabelBox(int(frame_index), int(first_track_id + tid - 1), str(labels[row]), tuple(map(float, box)),
                     verified=False, origin=BoxOrigin.DETECTOR)
            for row, tid, box in zip(rows, np.asarray(tracked.tracker_id, dtype=np.int64), xyxy))
        del detections.data[_ROW_KEY]
        yield FrameProposals(int(frame_index), boxes, detections)


def apply_prelabels(store: LabelStore, proposals: Iterable[FrameProposals], *, replace_existing: bool = True,
                    suppress_iou: float = 0.5) -> ProposalResult:
    """Write :func:`propose_tracks` output into ``store`` as one undo step.

    On each proposed frame the old proposals are removed (``replace_existing``); a proposal
    overlapping a verified box of the frame by ``IoU >= suppress_iou`` is dropped (that object
    is labelled already); verified frames are left alone.
    """
    new: list[LabelBox] = []
    remove: list[tuple[int, int]] = []
    for frame in proposals:
        verified = [b.xyxy_array for b in store.boxes(frame.frame_index) if b.verified]
        if replace_existing:
            remove += [b.key for b in store.boxes(frame.frame_index) if not b.verified]
        for box in frame.boxes:
            if verified and iou_matrix(box.xyxy_array[None], np.stack(verified)).max() >= suppress_iou:
                continue
            new.append(box)
    new_keys = {b.key for b in new}
    return store.apply_proposals(new, remove=[k for k in remove if k not in new_keys], description="pre-label")


@dataclass(frozen=True)
class PrelabelRun:
    """:func:`prelabel`'s result: what changed, and each frame's detections (for carrying)."""

    result: ProposalResult
    detections: dict[int, sv.Detections]


def prelabel(store: LabelStore, frames: Iterable[tuple[int, np.ndarray]], detector: Detector,
             config: PrelabelConfig = PrelabelConfig(), **apply_options: Any) -> PrelabelRun:
    """:func:`propose_tracks` then :func:`apply_prelabels` in the calling thread."""
    run = list(propose_tracks(frames, detector, config, first_track_id=store.next_track_id()))
    result = apply_prelabels(store, run, **apply_options)
    logger.info("pre-labels on %d frame(s): %s", len(run), result)
    return PrelabelRun(result, {p.frame_index: p.detections for p in run})


def iter_clip_frames(path: str | Path, first_frame: int = 0, last_frame: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame_index, image_bgr)`` of a video file for ``first_frame..last_frame`` (inclusive),
    decoded in order with :func:`app.sources.open_source` (frames before ``first_frame`` are
    decoded and skipped).

    Raises:
        SourceNotFoundError, SourceError: as :func:`app.sources.open_source`.
    """
    from app.sources import open_source

    source = open_source(path)
    try:
        for frame in source:
            if frame.index < first_frame:
                continue
            if last_frame is not None and frame.index > last_frame:
                break
            yield frame.index, frame.image
    finally:
        source.close()
