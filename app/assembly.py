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

ClassFilter = Callable[[Sequence[str]], "tuple[int, ...] | None"]


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
