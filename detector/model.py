"""The YOLOv7 network: a layer graph from :mod:`detector.architectures` plus a head.

``create_model(arch, num_classes=80)`` builds the deploy form (``Detect`` head, the layout of
the official release checkpoints); ``create_model(arch, training_head=True)`` builds the
training form (``IDetect``; for P6 models four auxiliary 3x3 convs and ``IAuxDetect``), and
:func:`to_deploy` folds a training-form model into the deploy form (implicit layers merged into
the head convs, auxiliary heads dropped), as the official re-parameterization does.

In eval mode ``model(x)`` with ``x (B, 3, H, W)`` float32 RGB in [0, 1] (H, W multiples of the
largest stride) returns decoded predictions ``(B, N, 5 + nc)``: ``cx, cy, w, h`` in input
pixels, objectness, per-class probabilities — the official ``model(x)[0]``. In train mode it
returns the raw head maps ``(B, na, ny, nx, 5 + nc)`` per level (lead levels, then auxiliary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .architectures import AVAILABLE_MODELS, ArchSpec, LayerSpec, get_arch_spec
from .coco import COCO_CLASS_NAMES
from .heads import Detect, IAuxDetect, IDetect
from .layers import MP, SP, SPPCSPC, Concat, Conv, DownC, RepConv, ReOrg, Shortcut

logger = logging.getLogger(__name__)

__all__ = ["AVAILABLE_MODELS", "YOLOv7", "create_model", "to_deploy", "default_class_names"]


def default_class_names(num_classes: int) -> list[str]:
    """COCO names for 80 classes, ``class_<i>`` otherwise."""
    if num_classes == len(COCO_CLASS_NAMES):
        return list(COCO_CLASS_NAMES)
    return [f"class_{i}" for i in range(num_classes)]


def _build_layer(spec: LayerSpec, in_channels: list[int], act: str) -> tuple[nn.Module, int]:
    """Instantiate one body layer; returns (module, output channels)."""
    c_in = [in_channels[s] for s in spec.sources]
    kind = spec.module
    if kind in ("Conv", "RepConv"):
        c_out, k, s = spec.args
        cls = Conv if kind == "Conv" else RepConv
        return cls(c_in[0], c_out, k, s, act=act), c_out
    if kind == "Concat":
        return Concat(), sum(c_in)
    if kind == "Shortcut":
        return Shortcut(), c_in[0]
    if kind == "MP":
        return MP(), c_in[0]
    if kind == "SP":
        return SP(spec.args[0]), c_in[0]
    if kind == "Upsample":
        return nn.Upsample(scale_factor=2.0, mode="nearest"), c_in[0]
    if kind == "SPPCSPC":
        return SPPCSPC(c_in[0], spec.args[0], act=act), spec.args[0]
    if kind == "DownC":
        return DownC(c_in[0], spec.args[0], act=act), spec.args[0]
    if kind == "ReOrg":
        return ReOrg(), 4 * c_in[0]
    raise ValueError(f"layer {spec.index}: unknown module type {kind!r}")


class YOLOv7(nn.Module):
    """A YOLOv7 model; ``self.model[i]`` is layer ``i`` of the official graph.

    Attributes:
        arch: architecture name; ``names``: class names (len ``num_classes``);
        ``stride``: float tensor ``(nl,)``; ``img_size``: default letterbox size (640 or 1280);
        ``head_form``: ``"deploy"`` or ``"training"``.
    """

    def __init__(self, spec: ArchSpec, num_classes: int = 80, *, training_head: bool = False,
                 names: Sequence[str] | None = None,
                 anchors_px: Sequence[Sequence[float]] | torch.Tensor | None = None,
                 input_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        names = list(names) if names is not None else default_class_names(num_classes)
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names given for num_classes={num_classes}")
        self.arch = spec.name
        self.spec = spec
        self.names = names
        self.num_classes = num_classes
        self.img_size = spec.img_size
        self.head_form = "training" if training_head else "deploy"
        anchors = torch.as_tensor(
            spec.anchors_px if anchors_px is None else anchors_px, dtype=torch.float32
        ).reshape(spec.num_levels, -1, 2)
        strides = torch.tensor(spec.strides, dtype=torch.float32)

        channels: list[int] = []
        layers: list[nn.Module] = []
        sources: list[tuple[int, ...]] = []
        for layer_spec in spec.layers:
            module, c_out = _build_layer(layer_spec, channels + [input_channels], spec.activation)
            layers.append(module)
            channels.append(c_out)
            sources.append(layer_spec.sources)
        head_sources = list(spec.head_sources)
        if training_head and spec.has_aux:
            for src, c_out in zip(spec.aux_sources, spec.aux_channels):
                layers.append(Conv(channels[src], c_out, 3, 1, act=spec.activation))
                channels.append(c_out)
                sources.append((src,))
                head_sources.append(len(layers) - 1)
        head_cls = (IAuxDetect if spec.has_aux else IDetect) if training_head else Detect
        head = head_cls(num_classes, anchors, strides, [channels[s] for s in head_sources])
        layers.append(head)
        sources.append(tuple(head_sources))
        self.model = nn.ModuleList(layers)
        self._sources = sources
        self._keep = self._outputs_to_keep(sources)
        self.register_buffer("stride", strides, persistent=False)

    @staticmethod
    def _outputs_to_keep(sources: list[tuple[int, ...]]) -> frozenset[int]:
        """Layer outputs that some later layer reads other than as its direct predecessor."""
        keep = set()
        for i, srcs in enumerate(sources):
            if len(srcs) > 1 or srcs[0] != i - 1:
                keep.update(s for s in srcs if s >= 0)
        return frozenset(keep)

    @property
    def head(self) -> Detect:
        return self.model[-1]  # type: ignore[return-value]

    @property
    def head_index(self) -> int:
        return len(self.model) - 1

    def _run_body(self, x: torch.Tensor,
                  observe: Callable[[int, torch.Tensor], None] | None = None) -> list:
        """Run every layer but the head; return the head's inputs. ``observe(i, output)`` is
        called after each layer when given."""
        saved: dict[int, torch.Tensor] = {}
        out = x
        for i in range(self.head_index):
            srcs = self._sources[i]
            if len(srcs) == 1:
                inp = x if srcs[0] == -1 else (out if srcs[0] == i - 1 else saved[srcs[0]])
            else:
                inp = [out if s == i - 1 else saved[s] for s in srcs]
            out = self.model[i](inp)
            if i in self._keep:
                saved[i] = out
            if observe is not None:
                observe(i, out)
        return [out if s == self.head_index - 1 else saved[s] for s in self._sources[-1]]

    def forward(self, x: torch.Tensor):
        """Eval: decoded ``(B, N, 5 + nc)``; train: list of raw maps (see module docstring)."""
        out = self.head(self._run_body(x))
        return out if self.training else out[0]

    def lead_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Eval: the head's lead level maps ``(B, na * (5 + nc), ny, nx)``, before reshaping and
        decoding; ``decode_lead_maps(lead_maps(x)) == model(x)``. Every op here is a convolution,
        an activation, a pooling, an upsampling or a concatenation, with no shape-dependent
        Python, so one traced graph of it serves every input shape
        (:mod:`detector.frozen`)."""
        head = self.head
        return tuple(head._level_maps(self._run_body(x)[: head.nl]))

    def decode_lead_maps(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decoded ``(B, N, 5 + nc)`` from :meth:`lead_maps`' output (fp32 for bf16 maps)."""
        head = self.head
        return head.decode(head._to_raw(list(maps)))

    def forward_with_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Eval-mode forward returning ``(decoded (B, N, no), raw maps per lead level)``."""
        was_training = self.training
        self.eval()
        try:
            return self.head(self._run_body(x))
        finally:
            self.train(was_training)

    def forward_layers(self, x: torch.Tensor, reduce: Callable[[torch.Tensor], Any] = lambda t: t,
                       ) -> tuple[list[Any], torch.Tensor, list[torch.Tensor]]:
        """Eval-mode forward that also returns ``reduce(output)`` of every body layer, in layer
        order (for parity checks; pass a reduction such as a float64 sum to save memory).

        Returns ``(per-layer values, decoded (B, N, no), raw lead maps)``."""
        values: list[Any] = []
        was_training = self.training
        self.eval()
        try:
            decoded, raw = self.head(self._run_body(x, lambda _, out: values.append(reduce(out))))
        finally:
            self.train(was_training)
        return values, decoded, raw

    def fuse(self) -> YOLOv7:
        """Fold BatchNorm into convs, merge RepConv branches and implicit layers (in place);
        for inference only. Returns ``self``."""
        for module in self.modules():
            if isinstance(module, (Conv, RepConv, Detect)):
                module.fuse()
        return self

    @property
    def is_fused(self) -> bool:
        return all(m.fused for m in self.modules() if isinstance(m, Conv))

    def initialize_for_training(self, class_frequency: torch.Tensor | None = None) -> None:
        """Detection-prior bias init for training from scratch (see ``Detect.initialize_biases``)."""
        self.head.initialize_biases(class_frequency, self.img_size)

    @property
    def anchors_px(self) -> torch.Tensor:
        """Anchors ``(nl, na, 2)`` in input pixels."""
        head = self.head
        return head.anchor_grid.reshape(head.nl, head.na, 2).clone()

    def describe(self) -> dict:
        """Metadata that travels with saved weights (architecture, classes, anchors, ...)."""
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "names": list(self.names),
            "anchors_px": self.anchors_px.tolist(),
            "strides": self.stride.tolist(),
            "img_size": self.img_size,
            "head_form": self.head_form,
        }


def create_model(arch: str, num_classes: int = 80, *, training_head: bool = False,
                 names: Sequence[str] | None = None,
                 anchors_px: Sequence[Sequence[float]] | torch.Tensor | None = None) -> YOLOv7:
    """Build an untrained (randomly initialised) YOLOv7 ``arch`` with ``num_classes`` classes.

    Args:
        arch: one of :data:`AVAILABLE_MODELS`.
        num_classes: number of classes.
        training_head: build the training form (IDetect / IAuxDetect) instead of deploy.
        names: class names (default: COCO for 80 classes, ``class_<i>`` otherwise).
        anchors_px: ``(nl, na, 2)`` or ``(nl, 2 * na)`` anchors in pixels (default: official).

    Raises:
        UnknownModelError: unknown ``arch``. ValueError: inconsistent names / class count.
    """
    return YOLOv7(get_arch_spec(arch), num_classes, training_head=training_head, names=names,
                  anchors_px=anchors_px)


def to_deploy(model: YOLOv7) -> YOLOv7:
    """Return a new deploy-form model equal (in eval mode) to training-form ``model``.

    Body weights are copied; the lead head's implicit layers are folded into its convs
    (``fold_implicit``); auxiliary convs and heads are dropped. A deploy-form input is returned
    as a copy.
    """
    deploy = YOLOv7(model.spec, model.num_classes, names=model.names, anchors_px=model.anchors_px)
    source = model.state_dict()
    target = deploy.state_dict()
    head_old, head_new = model.head_index, deploy.head_index
    prefix_old, prefix_new = f"model.{head_old}.", f"model.{head_new}."
    head = model.head
    folded: dict[str, torch.Tensor] = {}
    if isinstance(head, IDetect) and not head.implicit_folded:
        import copy

        head_copy = copy.deepcopy(head)
        head_copy.fuse()
        for i, conv in enumerate(head_copy.m):
            folded[f"{prefix_new}m.{i}.weight"] = conv.weight.detach()
            folded[f"{prefix_new}m.{i}.bias"] = conv.bias.detach()
    new_state = {}
    for key in target:
        if key.startswith(prefix_new):
            old_key = prefix_old + key[len(prefix_new):]
            new_state[key] = folded.get(key, source[old_key])
        else:
            new_state[key] = source[key]
    deploy.load_state_dict(new_state)
    return deploy
