"""Files that ship with yolov7-track: default configs, the sample clip and the bundled models.

This package holds data only. :func:`asset_path` finds a file whether the project runs from a
clone or from an installed wheel (``pip install .``); the bundled default model and the sample
clip are part of the package data, so an installed program works offline.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """The path of ``assets/<parts...>`` (it may not exist; callers check)."""
    return ASSETS_DIR.joinpath(*parts)
