"""Training checkpoints for ``--resume``: everything a run needs to continue exactly.

A checkpoint (``last.ckpt`` in the run directory) is written atomically at the end of every
epoch (temporary file in the same directory, fsync, ``os.replace``), so an interruption leaves
the previous complete checkpoint. It holds the model, the EMA, the optimizer (momentum
buffers), the AMP grad scaler, the epoch and iteration counters, the best fitness, the metrics
history, the run configuration and the RNG states (torch CPU and CUDA, numpy's and Python's
global generators). It is a ``torch.save`` archive of tensors and plain containers only, read
back with ``weights_only=True`` (no code is executed on load).

A file that is not such a checkpoint -- a pickle of other objects (torch's weights-only loader
refuses it), a corrupt archive, another version, missing entries -- raises :class:`ResumeError`
with one line naming the file; torch's multi-line advice to load it with ``weights_only=False``
is not passed on: a file this program did not write is never unpickled freely.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ResumeError

CHECKPOINT_NAME = "last.ckpt"
CHECKPOINT_VERSION = 1
#: Entries every checkpoint written by the trainer holds (``Trainer._save_checkpoint``).
REQUIRED_ENTRIES = ("epoch", "config", "model", "ema", "optimizer", "rng")
# How torch's weights-only unpickler names the global it refused (the rest of its message is
# advice to load the file with weights_only=False, which we never do).
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": _python_state_to_plain(random.getstate()),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_python_state_from_plain(state["python"]))


def _python_state_to_plain(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _python_state_from_plain(plain: dict[str, Any]) -> tuple:
    return plain["version"], tuple(plain["internal"]), plain["gauss"]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus version) to ``path`` atomically."""
    path = Path(path)
    payload = {"version": CHECKPOINT_VERSION, **payload}
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        make_world_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ResumeError: missing or unreadable file, a file holding objects other than tensors and
            plain containers, another checkpoint version, or missing entries; one line naming
            the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ResumeError(f"no training checkpoint at {path}; --resume takes a run directory "
                          f"(holding {CHECKPOINT_NAME}) or the checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler refused something
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        what = f"it references {found.group(1)}" if found else "its content is not tensors and plain containers"
        raise ResumeError(
            f"{path} is not a training checkpoint written by yolov7-track ({what}); it will not be loaded"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... for corrupt archives
        raise ResumeError(
            f"cannot read training checkpoint {path} ({_first_sentence(exc)}); the file is truncated "
            "or corrupt: resume from another run directory or start a new run"
        ) from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise ResumeError(f"{path} is not a version-{CHECKPOINT_VERSION} yolov7-track training checkpoint")
    missing = [key for key in REQUIRED_ENTRIES if key not in payload]
    if missing:
        raise ResumeError(f"{path} lacks the entries {missing} of a yolov7-track training checkpoint; "
                          "it is corrupt or was written by another program")
    payload["path"] = str(path)
    return payload


def _first_sentence(error: BaseException) -> str:
    """``"<type>: <first sentence of the message>"`` on one line (torch appends advice)."""
    text = " ".join(str(error).split())
    sentence = text.split(". ", 1)[0][:200]
    return f"{type(error).__name__}: {sentence}" if sentence else type(error).__name__


def make_world_readable(path: str | Path) -> None:
    """Give a file written through ``tempfile.mkstemp`` (mode 0600) mode 0644, as a plainly
    written file gets (``os.umask`` is not queried: changing it is not thread-safe)."""
    os.chmod(path, 0o644)
