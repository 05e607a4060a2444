"""Exported models (:mod:`detector.export`) run by ONNX Runtime or OpenVINO, as torch modules.

:class:`OnnxRuntimeModel` and :class:`OpenVINOModel` look like our torch YOLOv7 to the
:class:`~detector.inference.Detector`: ``forward(x)`` takes ``(B, 3, H, W)`` float32 RGB in [0, 1]
and returns the decoded ``(B, N, 5 + num_classes)`` float32 prediction; ``names``,
``num_classes``, ``stride`` (float tensor of level strides, a buffer) and ``img_size`` come from
the metadata inside the file. They have no parameters, so ``.to(device)`` and ``.eval()`` work
unchanged, and no ``fuse`` method (the export is fused already).

Threads: both runtimes get ``num_threads`` intra-op threads, by default
``torch.get_num_threads()`` read when the model is loaded (so ``Detector(num_threads=...)``, set
before loading, and ``torch.set_num_threads`` apply to every backend alike).

:func:`load_runtime` opens a file for a backend; :func:`export_for_backend` exports our weights
once into a cache folder for it and returns the cached file on later calls.

The optional packages are imported when a model is loaded; a missing one raises
:class:`~detector.export.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.errors import DetectorConfigError, DetectorError
from detector.export import (
    DEFAULT_CALIB_FRAMES,
    DEFAULT_OPSET,
    EXPORT_FORMAT_VERSION,
    IMAGE_SUFFIXES,
    METADATA_KEY,
    VIDEO_SUFFIXES,
    ExportError,
    ExportMetadata,
    metadata_from_props,
    package_version,
    read_onnx_metadata,
    require_module,
)
from detector.precision import resolve_inference_precision

logger = logging.getLogger(__name__)

RUNTIME_BACKENDS = ("onnxruntime", "openvino")
SUFFIXES = {"onnxruntime": (".onnx",), "openvino": (".xml", ".onnx")}
"""Files each backend opens (OpenVINO reads ONNX too)."""
OPENVINO_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
"""Our precision -> OpenVINO ``INFERENCE_PRECISION_HINT``."""
CACHE_FILE_NAMES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}


class _RuntimeModel(nn.Module):
    """Common part: metadata attributes, input checks, numpy round trip."""

    backend = ""

    def __init__(self, path: Path, meta: ExportMetadata, precision: str, num_threads: int) -> None:
        super().__init__()
        self.path = path
        self.metadata = meta
        self.arch = meta.arch
        self.names = list(meta.names)
        self.num_classes = meta.num_classes
        self.img_size = meta.img_size
        self.precision = precision
        self.num_threads = num_threads
        self.register_buffer("stride", torch.tensor(meta.strides, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded prediction of a model input.

        Args:
            x: ``(B, 3, H, W)`` float32 RGB in [0, 1]; ``H`` and ``W`` multiples of the largest
                stride. Any device (copied to the CPU).

        Returns:
            ``(B, N, 5 + num_classes)`` float32 on ``x``'s device: ``cx, cy, w, h`` in input
            pixels, objectness, class probabilities.

        Raises:
            DetectorError: ``x`` is not such a tensor.
        """
        self._check_input(x)
        array = np.ascontiguousarray(x.detach().cpu().numpy())
        return torch.from_numpy(self._run(array)).to(x.device)

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        stride = int(self.stride.max().item())
        if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.ndim != 4 or x.shape[1] != 3:
            shown = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise DetectorError(f"{type(self).__name__} needs a (B, 3, H, W) float32 RGB tensor in [0, 1], got {shown}")
        if x.shape[2] % stride or x.shape[3] % stride or x.shape[0] < 1:
            raise DetectorError(f"{type(self).__name__}: input height and width must be multiples of the stride "
                                f"{stride}, got {tuple(x.shape)}; letterbox with detector.preprocess")

    def extra_repr(self) -> str:
        return (f"path={str(self.path)!r}, arch={self.arch!r}, classes={self.num_classes}, precision={self.precision}, "
                f"weights={self.metadata.precision}, threads={self.num_threads}")


class OnnxRuntimeModel(_RuntimeModel):
    """An ONNX export (:func:`detector.export.export_onnx`) run by ONNX Runtime, in fp32.

    The session has ``intra_op_num_threads = num_threads`` (default ``torch.get_num_threads()``
    at load time), one inter-op thread, sequential execution and all graph optimisations. On a
    CUDA ``device`` it uses ``CUDAExecutionProvider`` (``onnxruntime-gpu``); inputs and outputs
    still pass through host memory.

    Args:
        path: the ``.onnx`` file.
        num_threads: CPU threads (``None``: ``torch.get_num_threads()`` now).
        device: ``"cpu"`` or ``"cuda[:N]"``.

    Raises:
        MissingExtraError: onnxruntime is not installed.
        ExportError: the file cannot be read or has no yolov7-track metadata.
        DetectorConfigError: CUDA asked for but this onnxruntime has no CUDA provider.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | PathLike[str], *, num_threads: int | None = None, device: str = "cpu") -> None:
        ort = require_module("onnxruntime", "ONNX Runtime inference")
        path = Path(path)
        threads = _threads(num_threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), options, providers=_ort_providers(ort, device))
        except _ort_errors(ort) as exc:
            raise ExportError(f"ONNX Runtime cannot load {path}: {_one_line(exc)}") from exc
        meta = metadata_from_props(dict(session.get_modelmeta().custom_metadata_map), path)
        super().__init__(path, meta, "fp32", threads)
        self._session = session
        self._input_name = session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input_name: x})[0]


class OpenVINOModel(_RuntimeModel):
    """An OpenVINO IR (``.xml``) or ONNX export run by OpenVINO on the CPU.

    Compiled with ``INFERENCE_PRECISION_HINT`` ``f32`` or ``bf16``, ``INFERENCE_NUM_THREADS`` and
    ``PERFORMANCE_HINT=LATENCY``. An int8 export (NNCF) runs its quantised layers in int8 and the
    rest in the hinted precision. One forward at a time (a lock guards the infer request).

    Args:
        path: ``.xml`` (with its ``.bin``) from :func:`detector.export.export_openvino`, or an
            ``.onnx`` from :func:`detector.export.export_onnx`.
        precision: ``"fp32"`` or ``"bf16"`` (only on CPUs with native bf16, see
            :func:`detector.precision.cpu_has_native_bf16`).
        num_threads: CPU threads (``None``: ``torch.get_num_threads()`` now).

    Raises:
        MissingExtraError: openvino (or, for an ``.onnx`` file, onnx) is not installed.
        ExportError: the file cannot be read or has no yolov7-track metadata.
        DetectorConfigError: a precision other than fp32/bf16, or bf16 without native support.
    """

    backend = "openvino"

    def __init__(self, path: str | PathLike[str], *, precision: str = "fp32", num_threads: int | None = None) -> None:
        ov = require_module("openvino", "OpenVINO inference")
        path = Path(path)
        precision = resolve_inference_precision(precision, torch.device("cpu"), "openvino")
        threads = _threads(num_threads)
        core = ov.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ExportError(f"OpenVINO cannot read {path}: {_one_line(exc)}") from exc
        meta = _openvino_metadata(model, path)
        config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISION_HINTS[precision],
                  "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        try:
            compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise ExportError(f"OpenVINO cannot compile {path} for the CPU: {_one_line(exc)}") from exc
        super().__init__(path, meta, precision, threads)
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def _run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: x})
            return self._request.get_output_tensor(0).data.copy()  # the request reuses its buffer


def _openvino_metadata(model: Any, path: Path) -> ExportMetadata:
    if model.has_rt_info([METADATA_KEY]):
        return ExportMetadata.from_json(model.get_rt_info([METADATA_KEY]).astype(str), path)
    if path.suffix.lower() == ".onnx":  # OpenVINO does not map ONNX metadata_props to rt_info
        return read_onnx_metadata(path)
    return metadata_from_props({}, path)  # raises: no metadata


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return torch.get_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise DetectorConfigError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
    return num_threads


def _ort_providers(ort: Any, device: str) -> list[Any]:
    device = torch.device(device)
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    raise DetectorConfigError(
        f"onnxruntime cannot run on {device}: its providers are {', '.join(ort.get_available_providers())}; "
        "install onnxruntime-gpu for CUDA, or use device 'cpu'")


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception types (they derive from ``Exception`` only) plus the usual ones."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "InvalidProtobuf", "InvalidGraph", "NoSuchFile", "NotImplemented",
             "RuntimeException")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError, ValueError, OSError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


# ----------------------------------------------------------------------------- opening

def load_runtime(path: str | PathLike[str], backend: str, *, precision: str = "fp32",
                 num_threads: int | None = None, device: str = "cpu") -> nn.Module:
    """Open an exported model for ``backend``.

    Args:
        path: ``.onnx`` (``onnxruntime`` or ``openvino``) or OpenVINO ``.xml`` (``openvino``).
        backend: ``"onnxruntime"`` or ``"openvino"``.
        precision: compute precision: ``"fp32"``; ``"bf16"`` with OpenVINO on a native-bf16 CPU;
            ``"auto"`` as :func:`detector.precision.resolve_inference_precision`.
        num_threads: CPU threads (``None``: ``torch.get_num_threads()`` now).
        device: ``"cpu"``, or ``"cuda[:N]"`` for onnxruntime with a CUDA provider.

    Returns:
        :class:`OnnxRuntimeModel` or :class:`OpenVINOModel`.

    Raises:
        MissingExtraError: the backend's package is not installed (one line: what to install).
        ExportError: a missing file, a file the backend does not open, no yolov7-track metadata.
        DetectorConfigError: an unknown backend, or a precision/device the backend cannot run.
    """
    if backend not in RUNTIME_BACKENDS:
        raise DetectorConfigError(f"backend must be one of {', '.join(RUNTIME_BACKENDS)} to open an export, got {backend!r}")
    path = Path(path).expanduser()
    if path.suffix.lower() not in SUFFIXES[backend]:
        kinds = " or ".join(SUFFIXES[backend])
        fmt = "onnx" if backend == "onnxruntime" else "openvino"
        raise ExportError(f"{path}: backend {backend!r} opens {kinds} files; export the weights with "
                          f"`yolov7-track export WEIGHTS --format {fmt}`")
    if not path.is_file():
        raise ExportError(f"exported model {path} does not exist; export it with `yolov7-track export`")
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise ExportError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it; copy both files")
    precision = resolve_inference_precision(precision, torch.device(device), backend)
    if backend == "onnxruntime":
        return OnnxRuntimeModel(path, num_threads=num_threads, device=device)
    return OpenVINOModel(path, precision=precision, num_threads=num_threads)


# ----------------------------------------------------------------------------- export cache

def default_export_cache() -> Path:
    """``<yolov7-track cache>/exports`` (``$YOLOV7_TRACK_CACHE`` or ``~/.cache/yolov7-track``)."""
    from detector.hub import cache_dir

    return cache_dir() / "exports"


def resolve_weights_file(weights: str | PathLike[str]) -> tuple[Path, str]:
    """The file :func:`detector.load_model` reads for ``weights`` (a path, a bundled or a registry
    name, downloaded if needed) and its sha256 (hex).

    Raises:
        CheckpointError, DownloadError: as :func:`detector.load_model`.
    """
    from detector.checkpoint import _resolve_source  # the resolution load_model itself uses
    from detector.hub import file_sha256

    path = _resolve_source(weights, download=True)
    return path, file_sha256(path)


def export_for_backend(
    weights: str | PathLike[str],
    backend: str,
    cache_dir: str | PathLike[str] | None = None,
    *,
    int8: bool = False,
    calib: str | PathLike[str] | None = None,
    calib_frames: int = DEFAULT_CALIB_FRAMES,
) -> Path:
    """The export of ``weights`` for ``backend``, written once into a cache folder and reused.

    The cache entry is a folder named after the weights file's stem and sha256, the format, the
    opset and exporter, :data:`~detector.export.EXPORT_FORMAT_VERSION` and the yolov7-track
    version (plus, for int8, a digest of the calibration files and ``calib_frames``). It is
    written in a temporary folder renamed into place, so a crash or a concurrent run never leaves
    a partial entry; two runs racing keep the first.

    Args:
        weights: our ``.safetensors``, an official ``.pt``, or a bundled/registry name (as
            :func:`detector.load_model` takes).
        backend: ``"onnxruntime"`` (ONNX) or ``"openvino"`` (OpenVINO IR, fp32 weights: bf16 is
            chosen when the model is compiled).
        cache_dir: default :func:`default_export_cache`.
        int8, calib, calib_frames: OpenVINO only, see :func:`detector.export.export_openvino`.

    Returns:
        the ``.onnx`` or ``.xml`` file to pass to :func:`load_runtime`.

    Raises:
        the errors of :func:`detector.load_model` and :mod:`detector.export`, and
        DetectorConfigError: an unknown backend, or int8 with onnxruntime.
        ExportError: the cache folder cannot be written.
    """
    if backend not in RUNTIME_BACKENDS:
        raise DetectorConfigError(f"backend must be one of {', '.join(RUNTIME_BACKENDS)} to export, got {backend!r}")
    if int8 and backend != "openvino":
        raise DetectorConfigError("int8 exports are OpenVINO models (NNCF); use backend 'openvino'")
    extra = "onnx" if backend == "onnxruntime" else "openvino"
    for module in ("onnx", "onnxruntime") if backend == "onnxruntime" else ("openvino", "onnx"):
        require_module(module, f"backend {backend!r}", extra=extra)  # before any work
    source, sha256 = resolve_weights_file(weights)
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_export_cache()
    entry = root / _cache_key(source, sha256, backend, int8, calib, calib_frames)
    target = entry / CACHE_FILE_NAMES[backend]
    if _complete(target):
        logger.debug("using the cached export %s", target)
        return target
    logger.info("exporting %s for %s once (cached in %s)", weights, backend, entry)
    _export_entry(source, sha256, backend, entry, int8=int8, calib=calib, calib_frames=calib_frames)
    return target


def _cache_key(source: Path, sha256: str, backend: str, int8: bool, calib: str | PathLike[str] | None,
               calib_frames: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.stem)[:64]
    fmt = "onnx" if backend == "onnxruntime" else "openvino"
    key = (f"{stem}-{sha256[:16]}-{fmt}-opset{DEFAULT_OPSET['torchscript']}-torchscript"
           f"-v{EXPORT_FORMAT_VERSION}-{package_version()}")
    if int8:
        key += f"-int8-{_calibration_digest(calib, calib_frames)}"
    return key


def _calibration_digest(calib: str | PathLike[str] | None, calib_frames: int) -> str:
    """Digest of the calibration files (names, sizes, mtimes) and the frame count."""
    digest = hashlib.sha256(f"frames={calib_frames}".encode())
    if calib is not None:
        root = Path(calib).expanduser()
        files = sorted(root.iterdir()) if root.is_dir() else [root]
        for file in files:
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
                stat = file.stat()
                digest.update(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def _complete(target: Path) -> bool:
    return target.is_file() and (target.suffix != ".xml" or target.with_suffix(".bin").is_file())


def _export_entry(source: Path, sha256: str, backend: str, entry: Path, **int8_options: Any) -> None:
    """Export into a temporary folder beside ``entry``, then rename it to ``entry``."""
    from detector.checkpoint import load_model
    from detector.export import export_onnx, export_openvino

    model = load_model(source, device="cpu", fuse=True)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as exc:
        raise ExportError(f"cannot write to the export cache {entry.parent}: {exc.strerror or exc}") from exc
    try:
        name = CACHE_FILE_NAMES[backend]
        if backend == "onnxruntime":
            export_onnx(model, staging / name, source_sha256=sha256)
        else:
            export_openvino(model, staging / name, source_sha256=sha256, **int8_options)
        if entry.exists():  # an incomplete entry (files removed by hand) or a concurrent winner
            if _complete(entry / name):
                return
            shutil.rmtree(entry)
        os.rename(staging, entry)
    except OSError as exc:
        if _complete(entry / CACHE_FILE_NAMES[backend]):  # lost a race to another process: use its entry
            return
        raise ExportError(f"cannot write the export cache entry {entry}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
