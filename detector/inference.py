"""The :class:`Detector`: BGR frames in, ``supervision.Detections`` out.

One call runs the official YOLOv7 ``detect.py`` path: letterbox (:mod:`detector.preprocess`),
the model's decoded forward pass, class-aware NMS and mapping the boxes back to the original frame
(:mod:`detector.postprocess`).
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
import supervision as sv
import torch
from torch import nn

from detector.errors import DetectorConfigError, DetectorError
from detector.frozen import FrozenYOLOv7
from detector.limits import MAX_IMG_SIZE_PX
from detector.model import YOLOv7
from detector.postprocess import MAX_DETECTIONS, non_max_suppression, scale_boxes
from detector.precision import BACKENDS, PRECISIONS, resolve_inference_precision
from detector.preprocess import Letterbox, letterbox_batch, uint8_to_unit_float, validate_bgr_image

logger = logging.getLogger(__name__)

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceUnavailableError(DetectorConfigError):
    """The requested device (for example ``cuda:1``) does not exist on this machine."""


@dataclass(frozen=True)
class DetectorConfig:
    """Options of a :class:`Detector`, validated at construction.

    Attributes:
        img_size: letterbox target in pixels (the longer side); ``None`` uses the model's default
            (640 for P5 models, 1280 for P6). Must be a multiple of the model's largest stride
            and at most :data:`~detector.limits.MAX_IMG_SIZE_PX` (4096: memory grows with its
            square).
        conf_thres: confidence threshold (``objectness * class probability``), in [0, 1].
        iou_thres: NMS IoU threshold, in [0, 1].
        classes: class ids to keep (``None``: all).
        agnostic_nms: one NMS over all classes instead of per class.
        max_det: detections kept per frame (official 300).
        device: ``"auto"`` (``cuda:0`` if available, else ``cpu``), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        precision: ``"fp32"`` (default: exact, the official code's CPU path), ``"bf16"``
            (bfloat16 weights and activations in channels_last, the body as a frozen TorchScript
            graph, :mod:`detector.frozen`; CPUs with native bf16, AVX512-BF16 or AMX),
            ``"fp16"`` (CUDA: the model in float16, as the official ``detect.py``) or ``"auto"``
            (the fastest precision proven accurate for this hardware and backend, see
            :mod:`detector.precision`). Pre- and post-processing stay fp32 either way: letterbox,
            the box decode and NMS.
        backend: ``"torch"`` (default), ``"onnxruntime"`` or ``"openvino"`` (optional extras;
            :meth:`Detector.from_weights` exports the weights once and caches the export).
        num_threads: CPU threads for torch (``torch.set_num_threads``, process-wide); ``None``
            leaves torch's setting alone.
        auto_letterbox: pad only to the next stride multiple (official ``auto=True``: a 16:9 frame
            runs at 384x640); ``False`` pads to a square ``img_size``.
        fuse: fold BatchNorm, RepConv and implicit layers before inference (``model.fuse()``;
            models without a ``fuse`` method are used as they are).
    """

    img_size: int | None = None
    conf_thres: float = 0.25
    iou_thres: float = 0.45
    classes: tuple[int, ...] | None = None
    agnostic_nms: bool = False
    max_det: int = MAX_DETECTIONS
    device: str = "auto"
    precision: str = "fp32"
    backend: str = "torch"
    num_threads: int | None = None
    auto_letterbox: bool = True
    fuse: bool = True

    def __post_init__(self) -> None:
        if self.img_size is not None and (not _is_int(self.img_size) or self.img_size <= 0):
            raise DetectorConfigError(f"img_size must be a positive int or None, got {self.img_size!r}")
        if self.img_size is not None and self.img_size > MAX_IMG_SIZE_PX:
            raise DetectorConfigError(_img_size_too_large(self.img_size))
        for name in ("conf_thres", "iou_thres"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise DetectorConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.classes is not None:
            is_sequence = isinstance(self.classes, Iterable) and not isinstance(self.classes, (str, bytes))
            classes = tuple(self.classes) if is_sequence else ()
            if not classes or not all(_is_int(c) and c >= 0 for c in classes):
                raise DetectorConfigError(
                    f"classes must be None or a non-empty sequence of class ids >= 0, got {self.classes!r}"
                )
            object.__setattr__(self, "classes", tuple(int(c) for c in classes))
        if not _is_int(self.max_det) or self.max_det < 1:
            raise DetectorConfigError(f"max_det must be an int >= 1, got {self.max_det!r}")
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise DetectorConfigError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}"
            )
        if self.precision not in PRECISIONS:
            raise DetectorConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise DetectorConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise DetectorConfigError("precision 'fp16' needs a CUDA device; on the CPU use 'bf16' "
                                      "(CPUs with AVX512-BF16/AMX), 'fp32' or 'auto'")
        if self.num_threads is not None and (not _is_int(self.num_threads) or self.num_threads < 1):
            raise DetectorConfigError(f"num_threads must be an int >= 1 or None, got {self.num_threads!r}")
        for name in ("agnostic_nms", "auto_letterbox", "fuse"):
            if not isinstance(getattr(self, name), bool):
                raise DetectorConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")


def _to_bf16(model: nn.Module) -> nn.Module:
    """``model`` with bf16 parameters (and BatchNorm statistics, for an unfused model), in place.

    The other buffers stay fp32: the head's anchors and strides feed the box decode, which runs
    in fp32 (bf16 keeps 8 significant bits: an anchor of 459 px would become 460). Converting
    once is what autocast would do to the weights on every call (measured 15-25 % slower)."""
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.is_floating_point():
                param.data = param.data.to(torch.bfloat16)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            for name, buffer in module.named_buffers(recurse=False):
                if buffer.is_floating_point():
                    setattr(module, name, buffer.to(torch.bfloat16))
    return model


def _why_auto(precision: str, device: torch.device, backend: str) -> str:
    if precision == "bf16":
        return "this CPU computes bf16 natively; bf16 passed the accuracy guard on every bundled model"
    if precision == "fp16":
        return "CUDA; fp16 is the official code's inference precision"
    if backend == "onnxruntime":
        return "onnxruntime runs fp32"
    return "no faster precision is native here (bf16 needs AVX512-BF16 or AMX)"


def _img_size_too_large(img_size: int) -> str:
    return (
        f"img_size {img_size} is larger than {MAX_IMG_SIZE_PX} px (MAX_IMG_SIZE_PX), which would "
        "exhaust memory; use a smaller img_size (640 or 1280 for the official models)"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def resolve_device(spec: str) -> torch.device:
    """Turn a device option into a :class:`torch.device`.

    ``"auto"`` is ``cuda:0`` when CUDA is available, else ``cpu``; ``"cuda"`` is ``cuda:0``.

    Raises:
        DeviceUnavailableError: CUDA is asked for but absent, or the index is out of range.
        DetectorConfigError: an unknown device string.
    """
    if not _DEVICE_PATTERN.match(spec):
        raise DetectorConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {spec!r} asked for, but CUDA is not available (torch {torch.__version__}, "
            f"built with CUDA {torch.version.cuda}); use device='cpu' or 'auto'"
        )
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    return torch.device("cuda", index)


def _model_attribute(model: nn.Module, name: str) -> Any:
    if not hasattr(model, name):
        raise DetectorError(
            f"the model ({type(model).__name__}) has no attribute {name!r}; a Detector needs a "
            "YOLOv7 model exposing stride, names, num_classes and img_size "
            "(see detector.create_model / detector.load_model)"
        )
    return getattr(model, name)


def load_detector_model(source: str | PathLike[str], config: DetectorConfig) -> nn.Module:
    """The model a :class:`Detector` with ``config`` runs: the torch model (:func:`load_model`,
    fused unless ``config.fuse`` is false) or, for another backend, its runtime module
    (:mod:`detector.runtimes`; weights that are not an export are exported once and cached).

    Raises:
        the errors of :func:`detector.load_model` and :mod:`detector.runtimes`, and
        DetectorConfigError: a precision the backend or device cannot run.
    """
    from pathlib import Path

    if config.backend == "torch":
        from detector.checkpoint import load_model  # lazy: checkpoint I/O is heavy

        if Path(source).suffix.lower() in (".onnx", ".xml"):
            raise DetectorConfigError(f"{source} is an exported model (ONNX / OpenVINO); run it with "
                                      "backend 'onnxruntime' or 'openvino' (--backend), or pass the "
                                      ".safetensors/.pt weights it was exported from")

        return load_model(source, device=resolve_device(config.device), fuse=config.fuse)
    from detector.runtimes import export_for_backend, load_runtime  # lazy: optional extras

    device = resolve_device(config.device)
    precision = resolve_inference_precision(config.precision, device, config.backend)
    path = Path(source)
    if path.suffix.lower() not in (".onnx", ".xml"):
        path = export_for_backend(source, config.backend)
    return load_runtime(path, config.backend, precision=precision, num_threads=config.num_threads)


class Detector:
    """YOLOv7 object detector on BGR frames, returning :class:`supervision.Detections`.

    The pipeline is the official ``detect.py`` (WongKinYiu/yolov7): letterbox to ``img_size``
    (:func:`detector.preprocess.letterbox`), RGB float input in [0, 1], the model's decoded
    prediction, class-aware NMS (:func:`detector.postprocess.non_max_suppression`) and boxes mapped
    back to the frame (:func:`detector.postprocess.scale_boxes`), all under
    ``torch.inference_mode``. The box decode and NMS run in float32 in every precision.

    The Detector takes the model over: it is moved to the device, put in eval mode, fused (if
    ``config.fuse``), converted to float16 (precision fp16) or to bf16 weights in channels_last
    (bf16; the head's anchors and box decode stay fp32) in place.
    :attr:`precision` is the precision it runs in (``auto`` resolved; logged at INFO).

    Args:
        model: a YOLOv7 ``nn.Module``: ``model(x)`` with ``x (B, 3, H, W)`` float RGB in [0, 1]
            returns ``(B, N, 5 + num_classes)`` (``cx, cy, w, h`` in input pixels, objectness,
            class probabilities), and it has ``stride`` (float tensor of level strides),
            ``names`` (list of str), ``num_classes`` and ``img_size``.
        config: options (default :class:`DetectorConfig`); or pass them as keyword ``options``.

    Raises:
        DetectorConfigError: invalid options, ``img_size`` not a multiple of the model's largest
            stride, a class id the model does not have, or a precision the device or backend
            cannot run (no silent fallback).
        DeviceUnavailableError: the requested CUDA device does not exist.
        DetectorError: the model lacks the attributes above or names and class count disagree.
    """

    def __init__(self, model: nn.Module, config: DetectorConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either a DetectorConfig or keyword options, not both")
        self.config = config if config is not None else DetectorConfig(**options)
        self.device = resolve_device(self.config.device)
        self.precision = resolve_inference_precision(self.config.precision, self.device, self.config.backend)
        self.backend = self.config.backend
        if self.backend != "torch" and isinstance(model, nn.Module) and any(True for _ in model.parameters()):
            raise DetectorConfigError(
                f"backend {self.backend!r} needs an exported model; use "
                f"Detector.from_weights(weights, backend={self.backend!r}), which exports and caches it"
            )
        self.names: list[str] = [str(name) for name in _model_attribute(model, "names")]
        self.num_classes = int(_model_attribute(model, "num_classes"))
        if len(self.names) != self.num_classes:
            raise DetectorError(
                f"the model has {len(self.names)} class names but num_classes={self.num_classes}"
            )
        self.stride = int(torch.as_tensor(_model_attribute(model, "stride")).max().item())
        self.img_size = int(self.config.img_size or _model_attribute(model, "img_size"))
        if not 0 < self.img_size <= MAX_IMG_SIZE_PX:  # a model attribute set by hand
            raise DetectorConfigError(_img_size_too_large(self.img_size))
        if self.img_size % self.stride:
            suggestion = -(-self.img_size // self.stride) * self.stride
            raise DetectorConfigError(
                f"img_size {self.img_size} is not a multiple of the model's largest stride "
                f"{self.stride}; use img_size={suggestion}"
            )
        if self.config.classes is not None:
            unknown = [c for c in self.config.classes if c >= self.num_classes]
            if unknown:
                raise DetectorConfigError(
                    f"classes {unknown} do not exist: the model has {self.num_classes} classes "
                    f"(ids 0 to {self.num_classes - 1})"
                )
        self._class_names = np.asarray(self.names, dtype=str)
        self.dtype = torch.float16 if self.precision == "fp16" and self.backend == "torch" else torch.float32

        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        model = model.to(self.device).eval()
        if self.config.fuse and callable(getattr(model, "fuse", None)) and not getattr(model, "is_fused", False):
            model = model.fuse() or model
        if self.backend == "torch" and self.precision == "fp16":
            model = model.half()
        if self._bf16:
            model = _to_bf16(model.to(memory_format=torch.channels_last))
        self.model = model
        # bf16 runs the body as one frozen TorchScript graph (detector.frozen): 10-20 % faster
        self._run_model: nn.Module = FrozenYOLOv7(model) if self._bf16 and isinstance(model, YOLOv7) else model
        picked = f" (auto: {_why_auto(self.precision, self.device, self.backend)})" if self.config.precision == "auto" else ""
        logger.info(
            "Detector ready: %s on %s, backend %s, precision %s%s, img_size %d, stride %d, %d classes",
            type(model).__name__, self.device, self.backend, self.precision, picked, self.img_size,
            self.stride, self.num_classes,
        )

    @property
    def _bf16(self) -> bool:
        return self.backend == "torch" and self.precision == "bf16"

    @classmethod
    def from_weights(
        cls, source: str | PathLike[str], config: DetectorConfig | None = None, **options: Any
    ) -> Detector:
        """Load a model with :func:`detector.checkpoint.load_model` (on the configured device,
        fused unless ``fuse=False``) and wrap it.

        With ``backend="onnxruntime"`` or ``"openvino"``, ``source`` may also be an exported
        ``.onnx`` / OpenVINO ``.xml`` file (``yolov7-track export``); weights of any other kind
        are exported once into ``~/.cache/yolov7-track/exports`` and the export is reused.

        Args:
            source: an official release ``.pt``, our ``.safetensors`` file, or a registry name
                (``"yolov7-tiny"``, ...), as :func:`load_model` accepts.
            config, options: as :class:`Detector`.

        Raises:
            the errors of :func:`load_model` (``CheckpointError``, ``DownloadError``, ...) and of
            :class:`Detector`.
        """
        if config is not None and options:
            raise TypeError("pass either a DetectorConfig or keyword options, not both")
        config = config if config is not None else DetectorConfig(**options)
        return cls(load_detector_model(source, config), config)

    # ------------------------------------------------------------------ inference

    def __call__(self, frame_bgr: np.ndarray) -> sv.Detections:
        """Detect objects in one frame.

        Args:
            frame_bgr: ``(H, W, 3)`` uint8 **BGR** image (as OpenCV and PyAV ``bgr24`` give).

        Returns:
            :class:`supervision.Detections` with ``xyxy`` float32 ``(M, 4)`` in frame pixels
            (clipped to the frame), ``confidence`` float32 ``(M,)``, ``class_id`` int64 ``(M,)``,
            ``data["class_name"]`` str ``(M,)``; rows in descending confidence, ``M <= max_det``.

        Raises:
            InvalidImageError: ``frame_bgr`` is not a non-empty (H, W, 3) uint8 array.
        """
        validate_bgr_image(frame_bgr, name="frame_bgr")
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames_bgr: Sequence[np.ndarray] | np.ndarray) -> list[sv.Detections]:
        """Detect objects in several frames with one forward pass.

        Frames may differ in size: each is letterboxed on its own and placed top-left in a common
        canvas (:func:`detector.preprocess.letterbox_batch`); its boxes are mapped back with its own
        letterbox geometry, so a frame gets the same boxes as alone up to the model's border
        effects of the extra padding.

        Args:
            frames_bgr: a sequence of ``(H, W, 3)`` uint8 BGR frames or a ``(B, H, W, 3)`` array.

        Returns:
            one :class:`supervision.Detections` per frame, in order (see :meth:`__call__`).

        Raises:
            InvalidImageError: an empty batch or a frame that is not (H, W, 3) uint8.
        """
        batch_u8, boxes = letterbox_batch(
            frames_bgr, self.img_size, stride=self.stride, auto=self.config.auto_letterbox
        )
        with torch.inference_mode():
            pred = self._forward(self._to_model_input(batch_u8))
            dets = non_max_suppression(
                pred.float(),
                conf_thres=self.config.conf_thres,
                iou_thres=self.config.iou_thres,
                classes=self.config.classes,
                agnostic=self.config.agnostic_nms,
                max_det=self.config.max_det,
            )
            return [self._to_detections(det, lb) for det, lb in zip(dets, boxes)]

    def warmup(self, image_hw: tuple[int, int] | None = None, runs: int = 1) -> None:
        """Run the model ``runs`` times on a grey input so that later calls are at full speed
        (first-call allocations, cuDNN autotuning).

        Args:
            image_hw: model input ``(h, w)`` in pixels (multiples of the stride); default
                ``(img_size, img_size)``.
            runs: number of forward passes.
        """
        h, w = image_hw if image_hw is not None else (self.img_size, self.img_size)
        if h % self.stride or w % self.stride:
            raise DetectorConfigError(f"warmup image_hw {(h, w)} must be multiples of the stride {self.stride}")
        batch_u8 = np.full((1, 3, h, w), 114, dtype=np.uint8)
        with torch.inference_mode():
            x = self._to_model_input(batch_u8)
            for _ in range(runs):
                self._forward(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ steps

    def _to_model_input(self, batch_u8: np.ndarray) -> torch.Tensor:
        """uint8 ``(B, 3, h, w)`` RGB -> model dtype on the device, ``/ 255`` as the official code."""
        if self.device.type == "cpu":
            return uint8_to_unit_float(batch_u8)
        # Copy the uint8 pixels (4x fewer bytes) and convert on the device, as detect.py does.
        x = torch.from_numpy(batch_u8).to(self.device, non_blocking=True)
        return x.to(self.dtype).div_(255.0)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """The model's decoded prediction for a model input, in this Detector's precision.

        Args:
            x: ``(B, 3, h, w)`` RGB in [0, 1] on :attr:`device`, float32 (float16 for fp16), ``h``
                and ``w`` multiples of :attr:`stride`.

        Returns:
            ``(B, N, 5 + num_classes)`` float32: ``cx, cy, w, h`` in input pixels, objectness and
            class probabilities (the input of NMS).

        Raises:
            DetectorError: the model returned something else.
        """
        return self._forward(x).float()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._bf16:
            # bf16 weights and activations (AVX512-BF16/AMX); the head decodes boxes in fp32
            pred = self._run_model(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        else:
            pred = self._run_model(x)
        if not isinstance(pred, torch.Tensor) or pred.ndim != 3 or pred.shape[2] != 5 + self.num_classes:
            shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise DetectorError(
                f"the model returned {shape}; expected a decoded prediction tensor "
                f"(B, N, {5 + self.num_classes}) in eval mode"
            )
        return pred

    def _to_detections(self, det: torch.Tensor, lb: Letterbox) -> sv.Detections:
        """``(M, 6)`` NMS rows in letterbox pixels -> Detections in the frame's pixels."""
        xyxy = scale_boxes(det[:, :4], lb.shape_hw, lb.source_hw).cpu().numpy().astype(np.float32, copy=False)
        det_np = det.cpu().numpy()
        class_id = det_np[:, 5].astype(np.int64)
        return sv.Detections(
            xyxy=xyxy.reshape(-1, 4),
            confidence=det_np[:, 4].astype(np.float32),
            class_id=class_id,
            data={"class_name": self._class_names[class_id]},
        )
