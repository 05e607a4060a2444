"""The one assembly path of a run for the CLI, the GUI and every camera of the service.

Each front end turns its own options (command line, settings file, cameras file) into the same
parts, built here:

- :func:`build_detector` loads the weights once (torch, or an exported ONNX Runtime / OpenVINO
  model), resolves the class filter (:func:`resolve_classes`, one rule for every front end)
  against the model's class names and builds the :class:`detector.Detector`;
- :func:`pace_source` wraps a source with ``--vid-stride`` and an fps cap;
- :func:`build_pipeline` builds the tracker of a :class:`TrackerChoice` from the registry
  (:mod:`tracker.registry`) at the source's frame rate, and the :class:`app.pipeline.Pipeline`
  with its counting lines and zones, event sinks and frame sinks.

A new run option is added here and in the front ends' option parsing, not in three builders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yolov7_track.errors import Yolov7TrackError

ClassFilter = Callable[[Sequence[str]], "tuple[int, ...] | None"]


class ClassFilterError(Yolov7TrackError, ValueError):
    """A class filter names a class (or id) the model does not have; the message says where the
    filter came from and lists the model's classes."""


def resolve_classes(tokens: Sequence[str] | None, names: Sequence[str], label: str = "classes") -> tuple[int, ...] | None:
    """Class ids of a class filter, the one rule of the CLI (``--classes``), the GUI settings
    and the cameras file: names (case-insensitive) or ids, comma-separated lists allowed,
    duplicates kept once, in the order given; no tokens keep every class (``None``).

    Args:
        tokens: the filter as given (``["car,truck", "0"]``).
        names: the model's class names (id = position).
        label: where the filter came from, for messages (``"--classes"``).

    Raises:
        ClassFilterError: an unknown name, an id the model does not have, or tokens that are
            all empty.
    """
    if not tokens:
        return None
    by_name = {name.lower(): i for i, name in enumerate(names)}
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    ids: list[int] = []
    for token in (t.strip() for raw in tokens for t in str(raw).split(",")):
        if not token:
            continue
        if token.isdigit():
            class_id = int(token)
            if class_id >= len(names):
                raise ClassFilterError(f"{label}: id {class_id} does not exist (the model has ids 0 to {len(names) - 1}: {shown})")
        elif token.lower() in by_name:
            class_id = by_name[token.lower()]
        else:
            raise ClassFilterError(f"{label}: unknown class {token!r}; the model's classes are {shown} ({len(names)})")
        if class_id not in ids:
            ids.append(class_id)
    if not ids:
        raise ClassFilterError(f"{label}: no class given")
    return tuple(ids)


def build_detector(weights: str, config: Any, class_filter: ClassFilter | None = None) -> Any:
    """A :class:`detector.Detector` for ``weights`` with ``config``.

    Args:
        weights: a bundled or registry model name, a ``.pt`` / ``.safetensors`` file, or (with an
            ``onnxruntime`` / ``openvino`` backend) an exported ``.onnx`` / ``.xml``.
        config: a :class:`detector.DetectorConfig` (its ``classes`` is replaced by the filter's).
        class_filter: the model's class names -> class ids to keep (``None``: all); it raises the
            front end's own error for a class the model does not have.

    Raises:
        the errors of :func:`detector.load_model`, of the runtimes and of :class:`detector.Detector`,
        and those of ``class_filter``.
    """
    from detector import Detector
    from detector.inference import load_detector_model

    model = load_detector_model(weights, config)
    if class_filter is not None:
        config = dataclasses.replace(config, classes=class_filter([str(n) for n in model.names]))
    return Detector(model, config)


#: The tracker's frame rate when the source has none (an image folder, some streams), frames per
#: second; ByteTrack scales its track buffer by it (Zhang et al., ECCV 2022, track_buffer at 30 fps).
DEFAULT_TRACKER_FPS = 30.0


@dataclass(frozen=True)
class TrackerChoice:
    """A registered tracker (:data:`tracker.registry.TRACKERS`) and its parameters.

    Attributes:
        name: ``bytetrack``, ``sort``, or any other registered name.
        params: parameter name -> value (:func:`tracker.registry.tracker_parameters`); checked
            when the tracker is built.
    """

    name: str = "bytetrack"
    params: Mapping[str, Any] = field(default_factory=dict)


def build_tracker(choice: TrackerChoice, source_fps: float | None) -> Any:
    """The tracker of ``choice`` at ``source_fps`` (:data:`DEFAULT_TRACKER_FPS` when the source
    has no frame rate).

    Raises:
        tracker.errors.InvalidTrackerConfigError: unknown tracker, parameter or value.
    """
    from tracker.registry import make_tracker

    frame_rate = float(source_fps) if source_fps else DEFAULT_TRACKER_FPS
    return make_tracker(choice.name, dict(choice.params), frame_rate=frame_rate)


def pace_source(source: Any, vid_stride: int = 1, fps_cap: float | None = None) -> Any:
    """``source`` with every ``vid_stride``-th frame kept (:class:`app.sources.stride.StridedSource`)
    and at most ``fps_cap`` frames per second of a live source
    (:class:`app.sources.stride.FpsCappedSource`); unchanged for 1 and ``None``."""
    from app.sources.stride import FpsCappedSource, StridedSource

    if vid_stride > 1:
        source = StridedSource(source, vid_stride)
    if fps_cap is not None:
        source = FpsCappedSource(source, fps_cap)
    return source


def build_pipeline(
    source: Any,
    detector: Any,
    tracker: TrackerChoice,
    *,
    counting: Sequence[Any] = (),
    config: Any | None = None,
    class_names: Sequence[str] | None = None,
    event_sinks: Sequence[Any] = (),
    frame_sinks: Sequence[Any] = (),
    renderer: Any | None = None,
) -> Any:
    """The :class:`app.pipeline.Pipeline` of one run or camera.

    Args:
        source: an opened :class:`app.frames.FrameSource` (already paced, :func:`pace_source`).
        detector: ``image_bgr -> sv.Detections`` (a :class:`detector.Detector`, or one camera's
            view of the batching detector).
        tracker: the tracker to build, at the source's frame rate.
        counting: :class:`app.counting.CountingConfig` of the lines and zones.
        config: :class:`app.pipeline.PipelineConfig` (``None``: its defaults).
        class_names: the model's class names (events carry them).
        event_sinks, frame_sinks, renderer: as :class:`app.pipeline.Pipeline`; the pipeline owns
            the sinks once built. If building fails, the caller still owns the source and the
            sinks and closes them.

    Raises:
        the errors of :func:`build_tracker` and of :class:`app.pipeline.Pipeline`.
    """
    from app.pipeline import Pipeline

    return Pipeline(source, detector, build_tracker(tracker, source.fps), counting=counting, config=config,
                    class_names=class_names, event_sinks=list(event_sinks), frame_sinks=list(frame_sinks),
                    renderer=renderer)
