"""The one place that decides whether the files of a run may be written.

A run reads one input (a video file or an image folder; streams and webcams have no path) and
writes up to three kinds of files: the annotated video (``--output``), event files
(``--events``, repeatable) and the JSON report (``--report``). :func:`check_run_paths` refuses,
before anything is opened, every plan in which one of these would overwrite another or the
input, and every output that cannot be created, so that a mistake costs nothing:

- *Same file* is decided by file identity, not by spelling: two paths are the same when they
  resolve (symlinks followed, ``..`` removed) to the same path, or when both exist and are the
  same inode on the same device (hard links), or when they name the same entry of the same
  directory (a folder reached through a symlink). A sidecar an output writes next to itself
  (the video's temporary ``.partial`` file) is not checked here.
- An output may sit inside an image folder that is the input: the folder source lists its
  images when it opens, before anything is written.
- Each output's folder must exist or be creatable, and be writable; an output path that is an
  existing folder is refused. The check creates missing folders (the run would create them
  anyway) so that a failure is found before the run, not after it.

Every refusal is a :class:`RunPathError` whose one-line message names the option and the path
and says what to do.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from yolov7_track.errors import Yolov7TrackError

__all__ = ["RunPathError", "RunOutput", "check_run_paths", "same_file", "describe_os_error"]


class RunPathError(Yolov7TrackError, ValueError):
    """The run's input and output paths collide, or an output cannot be written."""


@dataclass(frozen=True)
class RunOutput:
    """One file a run writes: the option (or GUI field) that names it, for messages, and the path.

    ``replaced`` says the file is written beside the path and renamed onto it when complete (the
    video, the JSON report): an existing file there needs no write permission, only its folder.
    """

    option: str
    path: Path
    replaced: bool = False


def _identity(path: Path) -> tuple[object, ...]:
    """A key equal for two spellings of the same file (see module docstring)."""
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if st is not None:
        return ("inode", st.st_dev, st.st_ino)
    resolved = path.resolve()
    try:
        parent = os.stat(resolved.parent)
    except OSError:
        return ("path", str(resolved))
    return ("entry", parent.st_dev, parent.st_ino, resolved.name)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (resolved path, hard links, symlinked folders)."""
    return _identity(Path(a)) == _identity(Path(b))


def describe_os_error(exc: OSError) -> str:
    """``strerror`` of an OSError without the path Python appends (the caller names it)."""
    return exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else None) or str(exc)


def _check_writable(output: RunOutput) -> None:
    path = output.path
    if path.is_dir():
        raise RunPathError(f"{output.option} {path}: is a folder; give a file name inside it")
    folder = path.resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunPathError(
            f"{output.option} {path}: cannot create its folder {folder}: {describe_os_error(exc)}"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunPathError(f"{output.option} {path}: the folder {folder} is not writable; choose another place")
    if not output.replaced and path.exists() and not os.access(path, os.W_OK):
        raise RunPathError(f"{output.option} {path}: the file exists and is not writable")


def check_run_paths(input_path: str | Path | None, outputs: Sequence[RunOutput]) -> None:
    """Refuse a run whose outputs collide with each other or with the input.

    Args:
        input_path: the input file or folder, or ``None`` for a stream, webcam or URL.
        outputs: the files the run will write, each with the option that names it.

    Raises:
        RunPathError: an output is the input, two outputs are the same file, an output is an
            existing folder, or an output's folder cannot be created or written. Missing output
            folders are created.
    """
    if input_path is not None:
        source = Path(input_path)
        if source.exists():
            for output in outputs:
                if same_file(output.path, source):
                    raise RunPathError(
                        f"{output.option} {output.path} is the input {source}: writing it would destroy "
                        "the input; choose another file name"
                    )
    for i, first in enumerate(outputs):
        for second in outputs[i + 1:]:
            if same_file(first.path, second.path):
                what = (f"{first.option} is given twice with {first.path}" if first.option == second.option
                        else f"{first.option} {first.path} and {second.option} {second.path} are the same file")
                raise RunPathError(f"{what}: each output needs its own file")
    for output in outputs:
        _check_writable(output)
