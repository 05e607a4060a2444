"""The one way tests and benchmarks reach the real data in ``../shared/``.

The data lives beside the project root (``<repo>/../shared``), never inside the repository. Set
``YOLOV7_TRACK_SHARED`` to point elsewhere. A missing file fails loudly with the path that was
looked for and what to do, instead of skipping the test.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV_VAR = "YOLOV7_TRACK_SHARED"


class SharedDataMissingError(FileNotFoundError):
    """Raised when a file of the shared data set is not where the tests expect it."""


def shared_root() -> Path:
    """Return the root of the shared data directory (``$YOLOV7_TRACK_SHARED`` or ``../shared``)."""
    return Path(os.environ.get(SHARED_ENV_VAR, REPO_ROOT.parent / "shared")).resolve()


def shared_path(*parts: str) -> Path:
    """Return ``<shared root>/<parts...>``, raising :class:`SharedDataMissingError` if absent.

    Example: ``shared_path("fixtures", "yolov7", "golden", "yolov7-tiny__coco139.npz")``.
    """
    path = shared_root().joinpath(*parts)
    if not path.exists():
        raise SharedDataMissingError(
            f"shared test data not found: {path}. The tests need the project's shared data "
            f"directory beside the repository (../shared) or at ${SHARED_ENV_VAR}."
        )
    return path


_CONFIG_PREFIX = "../../../shared"


def shared_data_config(name: str) -> Path:
    """Path of ``assets/configs/<name>`` with its ``path:`` pointed at :func:`shared_root`.

    The shipped data YAMLs find the data beside the repository (``../../../shared`` relative to
    the file); this copy honours ``$YOLOV7_TRACK_SHARED`` as every other test does.
    """
    import tempfile

    source = REPO_ROOT / "assets" / "configs" / name
    text = source.read_text()
    if _CONFIG_PREFIX not in text:
        raise SharedDataMissingError(f"{source} does not refer to the shared data ({_CONFIG_PREFIX})")
    target = Path(tempfile.mkdtemp(prefix="yolov7-track-config-")) / name
    target.write_text(text.replace(_CONFIG_PREFIX, str(shared_root())))
    return target
