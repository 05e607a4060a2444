"""Models that ship with yolov7-track, resolved by name with no network.

``yolov7-tiny-traffic`` is the default model: yolov7-tiny trained by this project's training
module on real frames of fixed, elevated traffic cameras and COCO128, for the COCO classes
person, bicycle, car, motorcycle, bus and truck (its metadata records data, splits, command,
hardware and the held-out AP per class and per source; ``assets/models/NOTICE.md`` carries the
CC BY 4.0 attributions). It is package data, so an installed wheel has it.

The two scene models (``yolov7-tiny-cars``, ``yolov7-tiny-pets09-person``) live beside it in
a clone of the repository only: they were trained on research-licensed data.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "yolov7-tiny-traffic"
BUNDLED_MODELS = {
    "yolov7-tiny-traffic": "yolov7-tiny-traffic.safetensors",
    "yolov7-tiny-cars": "yolov7-tiny-cars.safetensors",
    "yolov7-tiny-pets09-person": "yolov7-tiny-pets09-person.safetensors",
}
"""Bundled model name -> file name in ``assets/models``."""


def bundled_model_path(name: str) -> Path | None:
    """The file of bundled model ``name``, or ``None`` when ``name`` is not a bundled model.

    Raises:
        FileNotFoundError: ``name`` is a bundled model whose file is missing from this
            installation (the scene models are not in the wheel; use a clone).
    """
    if name not in BUNDLED_MODELS:
        return None
    from assets import asset_path

    path = asset_path("models", BUNDLED_MODELS[name])
    if not path.is_file():
        raise FileNotFoundError(f"bundled model {name!r} is not in this installation ({path} is "
                                "missing); the scene models ship only with a clone of the repository")
    return path
