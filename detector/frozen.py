"""YOLOv7's convolutional body as one frozen TorchScript graph, for bf16 inference on the CPU.

``torch.jit.trace`` records the body once; ``torch.jit.freeze`` inlines the weights as
constants, so oneDNN gets its weights pre-packed once instead of re-laid-out on every call,
and the Python layer loop disappears. Measured on a 2-vCPU Zen 4 (AVX512-BF16), yolov7-tiny at
384x640 in bf16: 10-20 % less latency than the eager model, identical outputs
(``benchmarks/detector_latency.py``).

Only the body and the head's 1x1 convs are traced (:meth:`YOLOv7.lead_maps`): they hold no
shape-dependent Python, so the one graph serves every batch size and letterbox shape (a test
checks several). The box decode stays eager, in fp32, as in the eager model.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings

import torch
from torch import nn

from .model import YOLOv7

logger = logging.getLogger(__name__)


class _LeadMaps(nn.Module):
    def __init__(self, model: YOLOv7) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.lead_maps(x)


class FrozenYOLOv7(nn.Module):
    """An eval-only YOLOv7 whose body runs as a frozen TorchScript graph.

    The graph is traced on the first call, from that call's input (a few seconds); calls
    return the same decoded ``(B, N, 5 + nc)`` predictions as ``model(x)``. TorchScript's
    executor specializes the graph to each new input shape on its first calls with it (a few
    hundred milliseconds each), so the first frames of a new size or batch size are slower.
    Thread-safe.

    Args:
        model: a YOLOv7 in eval mode, already in its inference precision and memory format;
            it is not copied, and must not change afterwards.
    """

    def __init__(self, model: YOLOv7) -> None:
        super().__init__()
        if model.training:
            raise ValueError("FrozenYOLOv7 needs a model in eval mode")
        self.model = model
        self._graph: torch.jit.ScriptModule | None = None
        self._lock = threading.Lock()  # two threads' first calls trace once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph = self._graph
        if graph is None:
            with self._lock:
                if self._graph is None:
                    self._graph = self._freeze(x)
                graph = self._graph
        return self.model.decode_lead_maps(graph(x))

    def _freeze(self, example: torch.Tensor) -> torch.jit.ScriptModule:
        start = time.perf_counter()
        # torch 2.13 marks TorchScript deprecated in favour of torch.compile; torch.compile
        # (inductor, freezing) was no faster here and compiles for 30 s per process. The pinned
        # torch has TorchScript; a test fails loudly if a later one drops it.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
            traced = torch.jit.trace(_LeadMaps(self.model).eval(), example, check_trace=False)
            graph = torch.jit.freeze(traced)
        logger.debug("body traced and frozen in %.1f s", time.perf_counter() - start)
        return graph
