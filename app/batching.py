"""One detector shared by many cameras, with dynamic batching.

Each camera's pipeline calls its own :class:`CameraDetector` (``image_bgr -> sv.Detections``)
from its inference thread, exactly as it would call a :class:`detector.Detector`. The call puts
the frame on the :class:`BatchingDetector`'s queue and waits. The batching thread takes the
first waiting frame, then keeps collecting until it holds ``max_batch`` frames or ``max_wait_ms``
have passed since the first one, runs one ``detect_batch`` over them (one forward pass) and
hands every camera its own detections. This is the dynamic batching of inference servers
(NVIDIA Triton's "dynamic batcher": preferred batch size, maximum queue delay).

A camera never waits for more than one batch in front of it plus its own: the queue is FIFO.
When the detector raises, every frame of that batch gets the exception, raised in its camera's
inference thread (which ends that camera's run, as a failing detector does in one pipeline);
the other cameras go on with the next batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import supervision as sv

from yolov7_track.errors import Yolov7TrackError

__all__ = ["BatchingDetector", "BatchingError", "CameraDetector"]

logger = logging.getLogger(__name__)

DetectBatch = Callable[[Sequence[np.ndarray]], list[sv.Detections]]


class BatchingError(Yolov7TrackError):
    """The shared detector was closed while a camera waited for it, or a bad option."""


@dataclass
class _Request:
    image: np.ndarray
    future: Future
    queued_at: float


class BatchingDetector:
    """Collects frames of many cameras into batches for one detector (see the module docstring).

    Args:
        detect_batch: ``frames_bgr -> one sv.Detections per frame`` (e.g.
            :meth:`detector.Detector.detect_batch`); called from the batching thread only.
        max_batch: most frames per forward pass (>= 1).
        max_wait_ms: longest a frame waits for others to join its batch, milliseconds (>= 0).
        on_batch: called with each batch's size and forward time in seconds (metrics), from a
            batching thread.
        workers: batches run at once (>= 1), each from its own thread. On a CPU a forward pass
            leaves cores idle at every layer's synchronisation; two passes at once fill those
            gaps (see benchmarks/cameras.py).

    Raises:
        BatchingError: an invalid option.
    """

    def __init__(self, detect_batch: DetectBatch, max_batch: int = 8, max_wait_ms: float = 10.0,
                 on_batch: Callable[[int, float], None] | None = None, workers: int = 1) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise BatchingError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not max_wait_ms >= 0:
            raise BatchingError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise BatchingError(f"workers must be an integer >= 1, got {workers!r}")
        self._detect_batch = detect_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0
        self.frames = 0
        self._count_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, name=f"batching-detector-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def for_camera(self, classes: Sequence[int] | None = None) -> CameraDetector:
        """A per-camera callable; ``classes`` keeps only those class ids for this camera."""
        return CameraDetector(self, None if classes is None else tuple(int(c) for c in classes))

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        """Detections of one frame, batched with the frames other threads submit meanwhile.

        Raises:
            BatchingError: the batcher is closed.
            whatever the detector raised for this frame's batch.
        """
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise BatchingError("the shared detector is closed")
            self._queue.append(_Request(image_bgr, future, time.perf_counter()))
            self._cond.notify_all()
        return future.result()

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in flight, fail frames still queued, stop the thread."""
        with self._cond:
            self._closed = True
            pending, self._queue = self._queue, []
            self._cond.notify_all()
        for request in pending:
            request.future.set_exception(BatchingError("the shared detector was closed"))
        for thread in self._threads:
            thread.join(timeout_s)

    @property
    def mean_batch(self) -> float:
        """Frames per forward pass so far (0 before the first)."""
        return self.frames / self.batches if self.batches else 0.0

    # ------------------------------------------------------------------ batching thread
    def _take_batch(self) -> list[_Request]:
        """The next batch; empty only once closed. With several workers, another one may take
        the frames this one was waiting on: it then starts over."""
        with self._cond:
            while True:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return []
                deadline = self._queue[0].queued_at + self.max_wait_s
                while self._queue and len(self._queue) < self.max_batch and not self._closed:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
                if batch:
                    return batch

    def _loop(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if not batch:
                    return
                self._run_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - a dead batcher must not leave cameras waiting
            logger.critical("the shared detector's batching thread died: %s: %s", type(exc).__name__, exc)
            raise
        finally:
            with self._cond:  # every frame still queued fails instead of waiting forever
                self._closed = True
                pending, self._queue = self._queue, []
            for request in pending:
                request.future.set_exception(BatchingError("the shared detector stopped"))

    def _run_batch(self, batch: list[_Request]) -> None:
        start = time.perf_counter()
        try:
            results = self._detect_batch([request.image for request in batch])
            if len(results) != len(batch):
                raise BatchingError(f"the detector returned {len(results)} results for {len(batch)} frames")
        except BaseException as exc:  # noqa: BLE001 - handed to every camera of the batch
            logger.error("shared detector failed on a batch of %d: %s: %s", len(batch), type(exc).__name__, exc)
            for request in batch:
                request.future.set_exception(exc)
            return
        seconds = time.perf_counter() - start
        with self._count_lock:
            self.batches += 1
            self.frames += len(batch)
        for request, detections in zip(batch, results):
            request.future.set_result(detections)
        if self._on_batch is not None:
            try:
                self._on_batch(len(batch), seconds)
            except Exception as exc:  # noqa: BLE001 - metrics must never stop detection
                logger.error("batch callback failed: %s: %s", type(exc).__name__, exc)


class CameraDetector:
    """One camera's view of a :class:`BatchingDetector`: ``image_bgr -> sv.Detections``.

    ``names`` and the other attributes a pipeline reads are those of nothing here; the service
    passes class names to the pipeline itself.
    """

    def __init__(self, batcher: BatchingDetector, classes: tuple[int, ...] | None) -> None:
        self._batcher = batcher
        self.classes = classes

    def __call__(self, image_bgr: np.ndarray) -> sv.Detections:
        """Raises :class:`detector.InvalidImageError` for a frame that is not ``(H, W, 3)``
        uint8 BGR, here, so that it fails this camera only and not the batch it would join."""
        from detector.preprocess import validate_bgr_image

        validate_bgr_image(image_bgr)
        detections = self._batcher.detect(image_bgr)
        if self.classes is None or len(detections) == 0:
            return detections
        return detections[np.isin(detections.class_id, self.classes)]
