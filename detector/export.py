"""Export a YOLOv7 model to ONNX and to OpenVINO IR, optionally quantised to int8 with NNCF.

What an export holds
--------------------
The fused, eval-mode YOLOv7 (as :func:`detector.load_model` returns it with ``fuse=True``),
**including the head's box decode**, so an exported model gives exactly what our torch model
gives (:mod:`detector.heads`):

* input ``"images"``: ``(B, 3, H, W)`` float32, **RGB**, values in [0, 1] (letterboxed as
  :func:`detector.preprocess.letterbox` does, ``uint8 / 255``); the batch, ``H`` and ``W`` are
  dynamic (``H`` and ``W`` multiples of the model's largest stride: a 16:9 frame at 640 is
  384x640);
* output ``"output"``: ``(B, N, 5 + num_classes)`` float32: ``cx, cy, w, h`` in input pixels,
  objectness and per-class probabilities, ``N = na * sum(H/s * W/s)`` over the head's strides.

NMS and mapping boxes back to the frame stay in :mod:`detector.postprocess` (run by the
:class:`~detector.inference.Detector`), so every backend shares them.

Metadata (:class:`ExportMetadata`) travels inside the files, under the key :data:`METADATA_KEY`
(``"yolov7_track"``) as one JSON object: in the ONNX ``metadata_props`` and in the OpenVINO
model's ``rt_info`` (saved in the ``.xml``). :mod:`detector.runtimes` reads it back.

Exporters
---------
``exporter="torchscript"`` (default) is ``torch.onnx.export(..., dynamo=False)``: it traces the
model in about 2 s and gives dynamic batch, height and width (checked in
``tests/test_export.py``). ``exporter="dynamo"`` is the ``torch.export``-based exporter (needs
``onnxscript``); it works too (strict mode: the non-strict trace cannot hash the symbolic sizes
that key the head's grid cache) but takes 15-30 s. The TorchScript exporter is deprecated by
PyTorch since 2.9; switch the default when it goes.

int8
----
:func:`export_openvino` with ``int8=True`` runs NNCF post-training quantisation
(``nncf.quantize``, following the NNCF docs "Post-training Quantization" / "Basic Quantization
Flow" for OpenVINO models, https://docs.openvino.ai/nncf: min-max range calibration on a few
hundred representative frames plus fast bias correction, after Nagel et al., "Data-Free
Quantization Through Weight Equalization and Bias Correction", ICCV 2019; the ``mixed`` preset,
symmetric weights and asymmetric activations, suits the signed outputs of LeakyReLU/SiLU,
Krishnamoorthi, "Quantizing deep convolutional networks for efficient inference", 2018). The
calibration frames are preprocessed exactly as the Detector does. ``model_type`` is left unset
(a CNN, not a transformer).

The head's box decode stays in floating point: an NNCF ``IgnoredScope`` names every op between
the head's 1x1 convolutions and the output (:func:`decode_op_names`). Without it NNCF puts a
FakeQuantize on the input of the size decode ``(2 * sigmoid) ** 2`` (8-bit steps of 0.8 % of a
box's size); box centres are not quantised either way. Measured on the traffic clip (8
calibration frames, 12 other frames, yolov7-tiny-traffic): the same 27/27 fp32 detections found
again with or without it, worst box error 3.3 vs 3.2 px, the same speed (24 ms at 384x640, one
thread): no accuracy need, kept because it costs nothing and keeps the decode exact.

Optional packages (``onnx``, ``onnxruntime``, ``onnxscript``, ``openvino``, ``nncf``) are
imported only inside the functions that use them; a missing one raises
:class:`MissingExtraError` with the one-line install command.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.errors import DetectorError
from detector.limits import MAX_IMG_SIZE_PX

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
"""Version of the export layout and metadata; part of the export cache key."""
METADATA_KEY = "yolov7_track"
INPUT_NAME = "images"
OUTPUT_NAME = "output"
EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = {"torchscript": 17, "dynamo": 18}
"""ONNX opset per exporter (the dynamo exporter starts at 18); ONNX Runtime and OpenVINO read both."""
OPENVINO_PRECISIONS = ("fp32", "fp16")
"""Weight storage of an OpenVINO export: fp32, or fp16 (compressed weights, half the file; the
CPU still computes in fp32/bf16 as asked when the model is compiled)."""
QUANTIZATION_PRESETS = ("mixed", "performance")
DEFAULT_CALIB_FRAMES = 300
"""Calibration frames used at most (NNCF's default ``subset_size``)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v")
EXTRA_FOR = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "openvino": "openvino", "nncf": "openvino"}
"""Optional module -> the pyproject extra that installs it."""


class ExportError(DetectorError):
    """An export that cannot be written or read: a bad output path, a file of the wrong kind, an
    export without yolov7-track metadata, an exporter failure."""


class MissingExtraError(DetectorError, ImportError):
    """An optional package (an extra of yolov7-track) that is not installed."""


class CalibrationDataError(ExportError):
    """int8 calibration data that is missing, empty or unreadable."""


def require_module(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import optional ``module`` for ``purpose`` (e.g. ``"ONNX export"``).

    Args:
        module: the package to import; purpose: what needs it (starts the message).
        extra: the extra to name (default :data:`EXTRA_FOR` of the package).

    Raises:
        MissingExtraError: it is not installed (or blocked); one line naming the extra and the
            ``pip install`` command.
    """
    extra = extra or EXTRA_FOR.get(module.split(".")[0], module)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the {extra!r} extra ({module} is not installed): "
            f"pip install 'yolov7-track[{extra}]'"
        ) from exc


# ----------------------------------------------------------------------------- metadata

@dataclass(frozen=True)
class ExportMetadata:
    """What an exported model needs to be used: stored as JSON under :data:`METADATA_KEY`.

    Attributes:
        arch: architecture name (``"yolov7-tiny"``, ...).
        names: class names, ``len(names) == num_classes``.
        strides: pixels per head level (``[8, 16, 32]`` or ``[8, 16, 32, 64]``).
        img_size: default letterbox size in pixels (the longer side).
        precision: weights of the file: ``"fp32"``, ``"fp16"`` (compressed) or ``"int8"``.
        source_sha256: sha256 of the weights file exported (``None`` for an in-memory model).
        exporter: ``"torchscript"`` or ``"dynamo"``; opset: the ONNX opset.
        format_version: :data:`EXPORT_FORMAT_VERSION`.
        package_version: yolov7-track version that wrote the file.
    """

    arch: str
    names: tuple[str, ...]
    strides: tuple[float, ...]
    img_size: int
    precision: str
    source_sha256: str | None
    exporter: str
    opset: int
    format_version: int = EXPORT_FORMAT_VERSION
    package_version: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_json(self) -> str:
        data = asdict(self)
        data["num_classes"] = self.num_classes
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | PathLike[str]) -> ExportMetadata:
        """Parse and validate the JSON of :meth:`to_json`.

        Raises:
            ExportError: not JSON, a missing or invalid key, or a newer ``format_version``; the
                message names ``source``.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ExportError(f"{source}: the {METADATA_KEY!r} metadata is not JSON ({exc}); re-export the model") from None
        problem = _metadata_problem(data)
        if problem:
            raise ExportError(f"{source}: invalid {METADATA_KEY!r} metadata: {problem}; re-export it with "
                              "`yolov7-track export`")
        return cls(
            arch=data["arch"], names=tuple(data["names"]), strides=tuple(float(s) for s in data["strides"]),
            img_size=int(data["img_size"]), precision=data["precision"], source_sha256=data.get("source_sha256"),
            exporter=data["exporter"], opset=int(data["opset"]), format_version=int(data["format_version"]),
            package_version=str(data.get("package_version", "")),
        )


def _metadata_problem(data: Any) -> str | None:
    """What is wrong with decoded metadata, or ``None``."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    checks = {
        "format_version": lambda v: isinstance(v, int) and 1 <= v <= EXPORT_FORMAT_VERSION,
        "arch": lambda v: isinstance(v, str) and bool(v),
        "names": lambda v: isinstance(v, list) and bool(v) and all(isinstance(n, str) for n in v),
        "strides": lambda v: isinstance(v, list) and bool(v) and all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in v),
        "img_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_IMG_SIZE_PX,
        "precision": lambda v: v in ("fp32", "fp16", "int8"),
        "exporter": lambda v: v in EXPORTERS,
        "opset": lambda v: isinstance(v, int) and v > 0,
    }
    for key, ok in checks.items():
        if key not in data:
            return f"{key!r} is missing"
        if not ok(data[key]):
            extra = " (written by a newer yolov7-track?)" if key == "format_version" else ""
            return f"{key!r} has an invalid value {data[key]!r}{extra}"
    if data.get("num_classes", len(data["names"])) != len(data["names"]):
        return f"num_classes {data['num_classes']} != {len(data['names'])} names"
    if data["img_size"] % int(max(data["strides"])):
        return f"img_size {data['img_size']} is not a multiple of the largest stride {max(data['strides'])}"
    return None


def package_version() -> str:
    """The installed yolov7-track version (``"unknown"`` when run from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("yolov7-track")
    except PackageNotFoundError:
        return "unknown"


def metadata_for(model: nn.Module, *, img_size: int, precision: str, exporter: str, opset: int,
                 source_sha256: str | None) -> ExportMetadata:
    """The :class:`ExportMetadata` of exporting ``model`` (a YOLOv7) with these settings."""
    return ExportMetadata(
        arch=str(model.arch), names=tuple(str(n) for n in model.names),
        strides=tuple(float(s) for s in model.stride.tolist()), img_size=int(img_size),
        precision=precision, source_sha256=source_sha256, exporter=exporter, opset=int(opset),
        package_version=package_version(),
    )


# ----------------------------------------------------------------------------- ONNX

def export_onnx(
    model: nn.Module,
    path: str | PathLike[str],
    *,
    img_size: int | Sequence[int] | None = None,
    opset: int | None = None,
    exporter: str = "torchscript",
    source_sha256: str | None = None,
) -> Path:
    """Export a YOLOv7 to ONNX with dynamic batch, height and width, metadata inside.

    The model is copied, moved to the CPU in float32, put in eval mode and fused (a training-form
    head is folded to the deploy form first); the caller's model is not changed.

    Args:
        model: a :class:`detector.model.YOLOv7` (fused or not).
        path: output file, ending in ``.onnx``; parent folders are created. Written atomically
            (a temporary sibling renamed onto it).
        img_size: ``N`` (square) or ``(h, w)`` in pixels, multiples of the largest stride: the
            example input traced, and (its longer side) the default letterbox size stored in the
            metadata. Default: the model's ``img_size``. Any other size runs as well.
        opset: ONNX opset (default :data:`DEFAULT_OPSET` of the exporter).
        exporter: ``"torchscript"`` (default, fast) or ``"dynamo"`` (``torch.export``; needs
            ``onnxscript``), see the module docstring.
        source_sha256: sha256 of the weights file, recorded in the metadata.

    Returns:
        the path written.

    Raises:
        MissingExtraError: ``onnx`` (or, for ``dynamo``, ``onnxscript``) is not installed.
        ExportError: a path not ending in ``.onnx`` or not writable, a bad ``img_size`` or
            ``exporter``, or the exporter failed.
    """
    onnx = require_module("onnx", "ONNX export")
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "dynamo":
        require_module("onnxscript", "ONNX export with exporter='dynamo'")
    path = _output_path(path, ".onnx")
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    model = _inference_copy(model)
    trace_hw = _trace_hw(model, img_size)
    meta = metadata_for(model, img_size=max(trace_hw), precision="fp32", exporter=exporter, opset=opset,
                        source_sha256=source_sha256)
    proto = _export_proto(model, trace_hw, opset, exporter)
    _annotate(proto, meta, onnx)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX graph is invalid ({' '.join(str(exc).split())[:300]})") from exc
    _write_atomically(path, lambda tmp: onnx.save_model(proto, str(tmp)))
    logger.info("exported %s (%s, %d classes, opset %d, %s exporter) to %s",
                meta.arch, meta.precision, meta.num_classes, opset, exporter, path)
    return path


def _inference_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU eval copy of ``model``, fused, with an empty grid cache.

    The head caches its grids by size (:meth:`detector.heads.Detect._grid`); the copy's caches are
    emptied so that no grid cached at one size can enter the graph as a constant and fix the
    export's input size (the graph computes the grids from the input's shape).
    """
    from detector.model import YOLOv7, to_deploy

    if not isinstance(model, YOLOv7):
        raise ExportError(f"export needs a detector.model.YOLOv7 (see detector.load_model), got {type(model).__name__}")
    model = copy.deepcopy(model).float().cpu().eval()
    if model.head_form == "training":
        model = to_deploy(model).eval()
    if not model.is_fused:
        model.fuse()
    for module in model.modules():
        grids = getattr(module, "_grids", None)
        if isinstance(grids, dict):
            grids.clear()
    return model


def _trace_hw(model: nn.Module, img_size: int | Sequence[int] | None) -> tuple[int, int]:
    stride = int(model.stride.max().item())
    if img_size is None:
        img_size = int(model.img_size)
    hw = (img_size, img_size) if isinstance(img_size, (int, np.integer)) else tuple(img_size)
    if (len(hw) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in hw)
            or not all(0 < v <= MAX_IMG_SIZE_PX and v % stride == 0 for v in hw)):
        raise ExportError(f"img_size must be an int or (h, w) of positive multiples of the stride {stride} "
                          f"up to {MAX_IMG_SIZE_PX}, got {img_size!r}")
    return int(hw[0]), int(hw[1])


def _export_proto(model: nn.Module, trace_hw: tuple[int, int], opset: int, exporter: str) -> Any:
    """The ONNX ``ModelProto`` of ``model`` (dynamic batch, height, width)."""
    import onnx

    x = torch.zeros((2, 3, *trace_hw), dtype=torch.float32)  # batch 2: a batch of 1 may be specialised
    try:
        if exporter == "torchscript":
            buffer = io.BytesIO()
            with warnings.catch_warnings():
                # torch >= 2.9 warns that this exporter is deprecated (see the module docstring)
                warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
                torch.onnx.export(
                    model, (x,), buffer, dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  OUTPUT_NAME: {0: "batch", 1: "anchors"}},
                )
            return onnx.load_model_from_string(buffer.getvalue())
        stride = int(model.stride.max().item())
        dim = torch.export.Dim
        shapes = ({0: dim("batch", min=1, max=1024),
                   2: stride * dim("height_cells", min=1, max=MAX_IMG_SIZE_PX // stride),
                   3: stride * dim("width_cells", min=1, max=MAX_IMG_SIZE_PX // stride)},)
        with warnings.catch_warnings():
            # the head fills its grid cache while traced: a side effect on this private copy only
            warnings.filterwarnings("ignore", message=".*side effects happened in the model.forward.*")
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=shapes)
        return program.model_proto
    except (RuntimeError, ValueError, TypeError, torch.onnx.errors.OnnxExporterError) as exc:
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {' '.join(str(exc).split())[:300]}") from exc


def _annotate(proto: Any, meta: ExportMetadata, onnx: ModuleType) -> None:
    """Metadata into ``metadata_props``; the output's last dimension (``5 + nc``) made explicit."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: meta.to_json()})
    proto.producer_name = "yolov7-track"
    proto.producer_version = meta.package_version
    proto.doc_string = (f"YOLOv7 {meta.arch}: {INPUT_NAME} (B, 3, H, W) float32 RGB [0, 1] -> {OUTPUT_NAME} "
                        f"(B, N, {5 + meta.num_classes}) float32 cx, cy, w, h (input px), objectness, class probabilities")
    last = proto.graph.output[0].type.tensor_type.shape.dim[2]
    if not last.HasField("dim_value"):
        last.dim_value = 5 + meta.num_classes


def read_onnx_metadata(path: str | PathLike[str]) -> ExportMetadata:
    """The :class:`ExportMetadata` of an ONNX file written by :func:`export_onnx`.

    Raises:
        MissingExtraError: ``onnx`` is not installed.
        ExportError: the file cannot be read or has no (valid) yolov7-track metadata.
    """
    onnx = require_module("onnx", "Reading ONNX metadata")
    from google.protobuf.message import DecodeError  # protobuf comes with onnx

    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:
        raise ExportError(f"cannot read ONNX file {path}: {' '.join(str(exc).split())[:200]}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    return metadata_from_props(props, path)


def metadata_from_props(props: dict[str, str], path: str | PathLike[str]) -> ExportMetadata:
    """:class:`ExportMetadata` from a file's string properties (ONNX ``metadata_props``).

    Raises:
        ExportError: :data:`METADATA_KEY` is absent or invalid.
    """
    if METADATA_KEY not in props:
        raise ExportError(f"{path} has no {METADATA_KEY!r} metadata: it was not written by "
                          "`yolov7-track export`; export the weights with it")
    return ExportMetadata.from_json(props[METADATA_KEY], path)


# ----------------------------------------------------------------------------- OpenVINO

def export_openvino(
    source: nn.Module | str | PathLike[str],
    path: str | PathLike[str],
    *,
    precision: str = "fp32",
    int8: bool = False,
    calib: str | PathLike[str] | None = None,
    calib_frames: int = DEFAULT_CALIB_FRAMES,
    preset: str = "mixed",
    quantize_decode: bool = False,
    img_size: int | Sequence[int] | None = None,
    opset: int | None = None,
    exporter: str = "torchscript",
    source_sha256: str | None = None,
) -> Path:
    """Convert a YOLOv7 (or its ONNX export) to OpenVINO IR ``NAME.xml`` + ``NAME.bin``.

    A torch model is exported to ONNX first (:func:`export_onnx`, in a temporary folder), then
    converted with ``openvino.convert_model`` and written with ``openvino.save_model``. The
    metadata goes into the model's ``rt_info`` under :data:`METADATA_KEY` (saved in the ``.xml``).

    Args:
        source: a :class:`detector.model.YOLOv7`, or an ``.onnx`` file from :func:`export_onnx`.
        path: output ``.xml`` (the ``.bin`` is written beside it); parent folders are created.
        precision: weights stored as ``"fp32"`` or ``"fp16"`` (compressed; computed in fp32/bf16).
        int8: quantise with NNCF post-training quantisation (module docstring) on ``calib``.
        calib: a folder of images and/or videos, or one image or video file: calibration frames,
            letterboxed and scaled as the Detector does (:func:`calibration_inputs`).
        calib_frames: calibration frames used at most (spread over the videos).
        preset: NNCF preset, ``"mixed"`` (default: symmetric weights, asymmetric activations, for
            the signed outputs of LeakyReLU/SiLU) or ``"performance"`` (all symmetric).
        quantize_decode: also quantise the head's box decode (default ``False``, see the module
            docstring; for measurements).
        img_size, opset, exporter, source_sha256: as :func:`export_onnx` (torch model only;
            ``img_size`` also sets the calibration letterbox size).

    Returns:
        the ``.xml`` path written.

    Raises:
        MissingExtraError: ``openvino``/``onnx`` (or, with ``int8``, ``nncf``) not installed.
        ExportError: a bad path, precision or preset, an ONNX file without our metadata.
        CalibrationDataError: ``int8`` without ``calib``, or no readable frame in it.
    """
    ov = require_module("openvino", "OpenVINO export")
    require_module("onnx", "OpenVINO export", extra="openvino")  # the conversion goes through ONNX
    if precision not in OPENVINO_PRECISIONS:
        raise ExportError(f"OpenVINO export precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {precision!r}")
    if preset not in QUANTIZATION_PRESETS:
        raise ExportError(f"preset must be one of {', '.join(QUANTIZATION_PRESETS)}, got {preset!r}")
    if int8:
        require_module("nncf", "int8 quantisation")
        if calib is None:
            raise CalibrationDataError("int8 quantisation needs calibration frames: pass a folder of images or "
                                       "a video of the scene (--calib DIR)")
    path = _output_path(path, ".xml")
    with tempfile.TemporaryDirectory(prefix="yolov7-track-export-") as work:
        onnx_path = _as_onnx(source, Path(work), img_size=img_size, opset=opset, exporter=exporter,
                             source_sha256=source_sha256)
        meta = read_onnx_metadata(onnx_path)
        ov_model = ov.convert_model(str(onnx_path))
    if int8:
        calib_size = meta.img_size if img_size is None or isinstance(source, nn.Module) else max(_pair(img_size))
        inputs = calibration_inputs(calib, img_size=calib_size, stride=int(max(meta.strides)), max_frames=calib_frames)
        ov_model = quantize_int8(ov_model, inputs, preset=preset, quantize_decode=quantize_decode)
    stored = "int8" if int8 else precision
    meta = ExportMetadata(**{**asdict(meta), "precision": stored})
    ov_model.set_rt_info(meta.to_json(), [METADATA_KEY])
    _write_openvino(ov, ov_model, path, compress_to_fp16=precision == "fp16")
    logger.info("exported %s to OpenVINO IR (%s weights) at %s", meta.arch, stored, path)
    return path


def _as_onnx(source: nn.Module | str | PathLike[str], work: Path, **options: Any) -> Path:
    if isinstance(source, nn.Module):
        return export_onnx(source, work / "model.onnx", **options)
    onnx_path = Path(source)
    if onnx_path.suffix.lower() != ".onnx" or not onnx_path.is_file():
        raise ExportError(f"{onnx_path} is not an ONNX file; pass a YOLOv7 model or an .onnx file written by export_onnx")
    return onnx_path


def _pair(img_size: int | Sequence[int]) -> tuple[int, ...]:
    return (int(img_size), int(img_size)) if isinstance(img_size, (int, np.integer)) else tuple(int(v) for v in img_size)


def _write_openvino(ov: ModuleType, ov_model: Any, path: Path, *, compress_to_fp16: bool) -> None:
    """``save_model`` into a temporary sibling folder, then move the ``.bin`` and the ``.xml``
    (the file readers open first) into place."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    except OSError as exc:
        raise ExportError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    try:
        ov.save_model(ov_model, str(staging / path.name), compress_to_fp16=compress_to_fp16)
        os.replace(staging / path.with_suffix(".bin").name, path.with_suffix(".bin"))
        os.replace(staging / path.name, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- int8

def decode_op_names(ov_model: Any) -> list[str]:
    """Friendly names of the ops between the head's convolutions and the model output.

    Walks back from the output and stops at ``Convolution`` ops (the head's 1x1 convs, which are
    quantised like the rest of the network), parameters and constants: what is left is the box
    decode (reshape, sigmoid, grid offsets, anchor scaling, concat) and the shape arithmetic
    feeding it.
    """
    stop = {"Convolution", "Parameter", "Constant"}
    names: list[str] = []
    seen: set[str] = set()
    stack = [result.input_value(0).get_node() for result in ov_model.get_results()]
    while stack:
        node = stack.pop()
        if node.get_name() in seen or node.get_type_name() in stop:  # get_name: unique per op
            continue
        seen.add(node.get_name())
        names.append(node.get_friendly_name())
        stack.extend(value.get_node() for value in node.input_values())
    return names


def quantize_int8(ov_model: Any, inputs: Sequence[np.ndarray], *, preset: str = "mixed",
                  quantize_decode: bool = False) -> Any:
    """NNCF post-training int8 quantisation of an OpenVINO YOLOv7 (see the module docstring).

    Args:
        ov_model: ``openvino.Model`` (from :func:`export_openvino`'s conversion).
        inputs: calibration model inputs, each ``(1, 3, h, w)`` float32 RGB in [0, 1].
        preset: ``"mixed"`` or ``"performance"``.
        quantize_decode: also quantise the box decode (default: left in floating point).

    Returns:
        the quantised ``openvino.Model``.

    Raises:
        MissingExtraError: ``nncf`` is not installed.
        CalibrationDataError: ``inputs`` is empty.
    """
    nncf = require_module("nncf", "int8 quantisation")
    if not inputs:
        raise CalibrationDataError("no calibration frames: pass a folder of images or a video of the scene")
    ignored = None if quantize_decode else nncf.IgnoredScope(names=decode_op_names(ov_model), validate=False)
    presets = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    logger.info("int8: calibrating on %d frames (NNCF %s, preset %s)", len(inputs), nncf.__version__, preset)
    nncf_logger = logging.getLogger("nncf")  # NNCF logs every ignored op at INFO on stdout
    previous_level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)
    try:
        return nncf.quantize(ov_model, nncf.Dataset(list(inputs)), preset=presets[preset],
                             subset_size=len(inputs), ignored_scope=ignored)
    finally:
        nncf_logger.setLevel(previous_level)


def calibration_inputs(
    source: str | PathLike[str], *, img_size: int, stride: int, max_frames: int = DEFAULT_CALIB_FRAMES
) -> list[np.ndarray]:
    """Calibration model inputs from a folder of images/videos or one image or video file.

    Each frame is preprocessed exactly as the :class:`~detector.inference.Detector` (default
    ``auto_letterbox=True``) does: :func:`detector.preprocess.to_input_tensor` (letterbox to
    ``img_size`` padded to a ``stride`` multiple, BGR -> RGB, ``/ 255``).

    Args:
        source: folder (its images ``*.jpg|png|...`` and videos ``*.mp4|mkv|...``, sorted by
            name, not recursive), or one image or video file.
        img_size: letterbox size in pixels; stride: the model's largest stride.
        max_frames: frames used at most: the images first, the rest spread evenly over each
            video's frames.

    Returns:
        list of ``(1, 3, h, w)`` float32 RGB arrays in [0, 1].

    Raises:
        CalibrationDataError: the source does not exist, holds no image or video, or a file in it
            cannot be decoded (named).
    """
    from detector.preprocess import to_input_tensor

    if not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1:
        raise CalibrationDataError(f"calib_frames must be an int >= 1, got {max_frames!r}")
    return [to_input_tensor(frame, img_size, stride=stride, auto=True)[0].numpy()
            for frame in read_calibration_frames(source, max_frames)]


def read_calibration_frames(source: str | PathLike[str], max_frames: int) -> list[np.ndarray]:
    """At most ``max_frames`` BGR uint8 ``(H, W, 3)`` frames from ``source`` (see
    :func:`calibration_inputs`). Raises :class:`CalibrationDataError`."""
    root = Path(source).expanduser()
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    elif root.is_file():
        files = [root]
    else:
        raise CalibrationDataError(f"calibration source {root} does not exist; pass a folder of images or a video")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES][:max_frames]
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not images and not videos:
        raise CalibrationDataError(
            f"no calibration images or videos in {root} (looked for {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}); "
            "put frames of the scene there")
    frames = [_read_image(p) for p in images]
    for i, video in enumerate(videos):
        quota = (max_frames - len(frames)) // (len(videos) - i)
        if quota > 0:
            frames.extend(_video_frames(video, quota))
    if not frames:
        raise CalibrationDataError(f"no frame could be read from {root}")
    return frames


def _read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationDataError(f"calibration image {path} cannot be decoded; remove it or replace it")
    return image


def _video_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over the video (its first frames when the length is unknown)."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            step = max(1, (stream.frames or 0) // count)
            for index, frame in enumerate(container.decode(stream)):
                if index % step == 0:
                    frames.append(frame.to_ndarray(format="bgr24"))
                    if len(frames) == count:
                        break
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise CalibrationDataError(f"calibration video {path} cannot be decoded ({exc}); remove it or replace it") from exc
    if not frames:
        raise CalibrationDataError(f"calibration video {path} has no frame")
    return frames


# ----------------------------------------------------------------------------- files

def _output_path(path: str | PathLike[str], suffix: str) -> Path:
    """``path`` checked to end in ``suffix``, its parent folder created.

    Raises:
        ExportError: another suffix, a folder at ``path``, or a parent that cannot be created.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != suffix:
        raise ExportError(f"output {path}: use a file name ending in {suffix}")
    if path.is_dir():
        raise ExportError(f"output {path} is a folder; pass a file name ending in {suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output folder {path.parent}: {exc.strerror or exc}") from exc
    return path


def _write_atomically(path: Path, write: Any) -> None:
    """``write(tmp)`` to a temporary sibling, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()

