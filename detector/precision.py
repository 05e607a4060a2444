"""Numeric precision of model compute: ``auto``, ``fp32``, ``bf16``, ``fp16``.

Only precisions the hardware runs natively are chosen automatically:

* ``bf16`` on CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16; Intel Cooper Lake,
  Sapphire Rapids and later, AMD Zen 4 and later). Without it bf16 is emulated and slower than
  fp32, so ``auto`` keeps fp32 there.
* ``fp16`` on CUDA (tensor cores; mixed precision with loss scaling for training).

Asking for a precision the device cannot run raises :class:`~detector.errors.DetectorConfigError`;
there is no silent fallback.

For inference, ``auto`` picks the fastest precision whose accuracy is *proven* for the hardware
and backend: on every bundled model, mAP@0.5 through ``yolov7-track val`` moves by at most
:data:`ACCURACY_GUARD_MAP50` (0.005) from fp32 (``benchmarks/precision_guard.py``, results in
``benchmarks/results/precision_guard.json``). bf16 on a native-bf16 CPU passed it with torch and
OpenVINO. fp16 on CUDA is the official code's own inference precision (``test.py``/``detect.py``
run ``model.half()`` on CUDA; the paper's mAP is fp16). ONNX Runtime runs fp32 only here.
int8 (NNCF post-training quantisation) is never picked by ``auto``: it is an export option.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from .errors import DetectorConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("torch", "onnxruntime", "openvino")
ACCURACY_GUARD_MAP50 = 0.005  # issue 12: largest mAP@0.5 change allowed for a precision `auto` picks
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bfloat16 arithmetic natively (``/proc/cpuinfo`` flags
    ``avx512_bf16`` or ``amx_bf16``; elsewhere oneDNN's own check)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            flags = {f for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
                     for f in line.split(":", 1)[1].split()}
            return any(flag in flags for flag in _CPU_BF16_FLAGS)
        except OSError as exc:
            logger.debug("cannot read %s: %s", cpuinfo, exc)
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` for ``device`` as one of ``fp32``, ``bf16``, ``fp16``.

    ``auto``: ``fp16`` on CUDA, ``bf16`` on a CPU with native bf16, else ``fp32``.

    Raises:
        DetectorConfigError: an unknown name, ``fp16`` on a CPU, or ``bf16`` on a CPU without
            native bf16 or a CUDA device without bf16 support.
    """
    if precision not in PRECISIONS:
        raise DetectorConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise DetectorConfigError("precision 'fp16' needs a CUDA device; on the CPU use 'bf16' "
                                  "(CPUs with AVX512-BF16/AMX) or 'fp32'")
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise DetectorConfigError("precision 'bf16' asked for, but this CPU has no native bf16 "
                                      "(AVX512-BF16 or AMX); use 'fp32'")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DetectorConfigError(f"precision 'bf16' is not supported on {device}; use 'fp16'")
    return precision


def resolve_inference_precision(precision: str, device: torch.device, backend: str = "torch") -> str:
    """The precision inference runs in for ``precision`` on ``device`` with ``backend``.

    * ``torch``: as :func:`resolve_precision` (``auto``: fp16 on CUDA, bf16 on a native-bf16 CPU,
      else fp32).
    * ``onnxruntime``: fp32 (its CPU kernels have no bf16 convolutions); ``auto`` gives fp32.
    * ``openvino``: CPU only; fp32 or bf16 (native-bf16 CPUs; ``INFERENCE_PRECISION_HINT``).

    Raises:
        DetectorConfigError: an unknown backend or precision, or one the backend/device cannot run.
    """
    if backend not in BACKENDS:
        raise DetectorConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return resolve_precision(precision, device)
    if precision not in PRECISIONS:
        raise DetectorConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if backend == "openvino":
        if device.type != "cpu":
            raise DetectorConfigError(f"backend 'openvino' runs on the CPU here; use device 'cpu', not {device}")
        if precision == "fp16":
            raise DetectorConfigError("backend 'openvino' on the CPU runs fp32 or bf16, not fp16")
        return resolve_precision(precision, device)
    if precision in ("bf16", "fp16"):
        raise DetectorConfigError(f"backend 'onnxruntime' runs fp32 only; for {precision} use backend "
                                  "'torch' or 'openvino'")
    return "fp32"
