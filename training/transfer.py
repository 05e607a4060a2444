"""Finetuning: copy pretrained weights into a training model, reporting every tensor.

:func:`transfer_weights` copies each tensor of the source model whose key and shape match the
target (the head's keys are matched by position in the head, so a deploy-form source whose
head sits at another layer index than the P6 training form still lines up). Nothing is skipped
silently: the :class:`TransferReport` lists the transferred tensors, the target tensors left at
their fresh initialisation (absent from the source, or of another shape — e.g. the head convs
when the class count differs) and the source tensors that were not used.

:func:`freeze_layers` stops gradients in the first ``n`` layers (official ``--freeze``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from detector.model import YOLOv7

from .errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class TransferReport:
    """What :func:`transfer_weights` did; keys are the target model's state-dict keys."""

    source: str
    transferred: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    not_in_source: list[str] = field(default_factory=list)
    unused_source: list[str] = field(default_factory=list)
    class_names_changed: bool = False

    @property
    def reinitialised(self) -> list[str]:
        """Target tensors that keep their fresh initialisation."""
        return sorted(self.shape_mismatch) + self.not_in_source

    def summary(self) -> str:
        lines = [f"weights from {self.source}: {len(self.transferred)} tensors transferred, "
                 f"{len(self.reinitialised)} initialised afresh, {len(self.unused_source)} "
                 "source tensors unused"]
        for key, (src, tgt) in sorted(self.shape_mismatch.items()):
            lines.append(f"  re-initialised {key}: source shape {tuple(src)} vs model {tuple(tgt)}")
        lines += [f"  initialised {key}: not in the source" for key in self.not_in_source]
        lines += [f"  unused source tensor {key}" for key in self.unused_source]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["reinitialised"] = self.reinitialised
        return out


def _head_relative(key: str, head_index: int) -> str:
    prefix = f"model.{head_index}."
    return "head." + key[len(prefix):] if key.startswith(prefix) else key


def transfer_weights(target: YOLOv7, source: YOLOv7, source_name: str = "source") -> TransferReport:
    """Copy matching tensors of ``source`` into ``target`` (in place); see the module docstring.

    Raises:
        ConfigError: the architectures differ.
    """
    if source.arch != target.arch:
        raise ConfigError(f"cannot finetune {target.arch} from {source_name}: it holds a "
                          f"{source.arch} model; choose --model {source.arch} or other weights")
    report = TransferReport(source=source_name,
                            class_names_changed=list(source.names) != list(target.names))
    src = {_head_relative(k, source.head_index): v for k, v in source.state_dict().items()}
    state = target.state_dict()
    used = set()
    for key, value in state.items():
        rel = _head_relative(key, target.head_index)
        if rel not in src:
            report.not_in_source.append(key)
            continue
        used.add(rel)
        if src[rel].shape != value.shape:
            report.shape_mismatch[key] = (list(src[rel].shape), list(value.shape))
            continue
        value.copy_(src[rel].to(dtype=value.dtype, device=value.device))
        report.transferred.append(key)
    report.unused_source = sorted(set(src) - used)
    logger.info(report.summary())
    if report.class_names_changed and not report.shape_mismatch:
        logger.warning("class names differ from %s (%s...) but the head has the same shape; "
                       "its class outputs were transferred as they are", source_name, source.names[:3])
    return report


def freeze_layers(model: YOLOv7, count: int) -> list[str]:
    """Disable gradients of the parameters of layers ``model.model[0:count]``; returns their
    names. ``count`` must leave the head trainable."""
    if count < 0 or count >= model.head_index:
        raise ConfigError(f"freeze must be in [0, {model.head_index}) for {model.arch} "
                          f"(the head is layer {model.head_index}), got {count}")
    frozen = []
    for name, param in model.named_parameters():
        parts = name.split(".")
        if parts[0] == "model" and int(parts[1]) < count:
            param.requires_grad_(False)
            frozen.append(name)
    if frozen:
        logger.info("froze %d parameter tensors in layers 0-%d", len(frozen), count - 1)
    return frozen
