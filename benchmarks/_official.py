"""The official YOLOv7 code (WongKinYiu/yolov7), loaded from a checkout for same-run timings.

The checkout is not part of this project (GPL-3.0 too, but not vendored): its path comes from
``$YOLOV7_OFFICIAL_DIR`` (a clone, or at least its ``models/``, ``utils/`` and ``cfg/``). When the
variable is not set, :func:`official_model` returns ``None`` with the reason and the benchmark
skips that column, saying so.

Its ``utils`` import ``torchvision`` and ``seaborn`` at module level for NMS, plotting and
datasets, none of which the timed forward pass uses. Where they are not installed (torchvision
has no CPU build here), empty stand-in packages are put on ``sys.path`` for the import only;
anything that would call into them raises.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import torch

ENV_VAR = "YOLOV7_OFFICIAL_DIR"
_STANDIN = (
    "def __getattr__(name):\n"
    "    if name.startswith('__'):\n"
    "        raise AttributeError(name)\n"
    "    return _Unused\n\n\n"
    "class _Unused:\n"
    "    def __init__(self, *args, **kwargs):\n"
    "        raise RuntimeError('stand-in for a package the official forward pass does not use')\n"
)


def official_checkout() -> tuple[Path | None, str]:
    """``(checkout, "")`` or ``(None, why it is not available)``."""
    value = os.environ.get(ENV_VAR)
    if not value:
        return None, f"${ENV_VAR} is not set (a checkout of WongKinYiu/yolov7)"
    path = Path(value)
    if not (path / "models" / "experimental.py").is_file():
        return None, f"${ENV_VAR}={value} has no models/experimental.py"
    return path, ""


def _stand_in_missing_packages() -> list[str]:
    missing = [name for name in ("torchvision", "seaborn") if importlib.util.find_spec(name) is None]
    if missing:
        root = Path(tempfile.mkdtemp(prefix="official-standins-"))
        for name in missing:
            package = root / name
            package.mkdir()
            for module in ("__init__", "ops", "utils", "transforms", "datasets", "models"):
                (package / f"{module}.py").write_text(_STANDIN)
        sys.path.insert(0, str(root))
    return missing


def official_model(weights: Path) -> tuple[torch.nn.Module | None, str]:
    """The official code's fused fp32 eval model for an official-format checkpoint
    (``models.experimental.attempt_load``, which fuses Conv+BN as ``detect.py`` does), or
    ``(None, why)``. Its forward returns ``(pred, raw)``; time ``model(x)[0]``.

    The checkpoint is a pickle of the official classes: it is loaded with ``weights_only=False``,
    so pass only trusted files (the project's own fixtures)."""
    checkout, why = official_checkout()
    if checkout is None:
        return None, why
    _stand_in_missing_packages()
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from models.experimental import attempt_load  # the official code

    original = torch.load
    torch.load = lambda *args, **kwargs: original(*args, **{**kwargs, "weights_only": False})
    try:
        model = attempt_load(str(weights), map_location="cpu")
    finally:
        torch.load = original
    return model.float().eval(), ""
