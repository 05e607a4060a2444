"""Faults the reliability tests inject where a real one cannot be made in CI (no tmpfs mount)."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class FullDisk:
    """A binary file that accepts ``limit_bytes`` and then fails like a full disk (ENOSPC).

    Unbuffered, so what was accepted is on disk for a reader at once. PyAV writes to it as to
    any file object (``av.open(FullDisk(...), "w", format="mp4")``).
    """

    def __init__(self, path: Path, limit_bytes: int) -> None:
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        self.limit_bytes = limit_bytes
        self.failed_writes = 0

    def write(self, data: bytes) -> int:
        if self._file.tell() + len(data) > self.limit_bytes:
            self.failed_writes += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
