"""The one assembly path of the detector for the CLI, the GUI (and later the service).

Each front end turns its own options into a :class:`detector.DetectorConfig` and a class filter;
:func:`build_detector` loads the weights once (torch, or an exported ONNX Runtime / OpenVINO
model), resolves the class filter against the model's class names and builds the
:class:`detector.Detector`. A new detector option is added here and in the front ends' option
parsing, not in three loaders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
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
