"""Optimizer, learning-rate schedule and warmup of the YOLOv7 recipe (official ``train.py``).

* SGD with Nesterov momentum, three parameter groups: (0) BatchNorm weights and implicit
  knowledge tensors, no weight decay; (1) conv/linear weights, with weight decay; (2) biases,
  no weight decay.
* Cosine ("one cycle") LR factor per epoch ``lf(e) = ((1 - cos(pi e / E)) / 2) (lrf - 1) + 1``,
  from 1 down to ``lrf``.
* Linear warmup over the first ``nw`` iterations: the bias LR falls from ``warmup_bias_lr``,
  the other LRs rise from 0, both to ``lr0 lf(e)``; momentum rises from ``warmup_momentum``;
  the number of batches accumulated per step rises from 1 to ``64 / batch``.

The schedule is a pure function of (iteration, epoch), so a resumed run needs no scheduler
state to continue exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from detector.layers import ImplicitA, ImplicitM

from .config import Hyperparameters

logger = logging.getLogger(__name__)

GROUP_NO_DECAY, GROUP_DECAY, GROUP_BIAS = 0, 1, 2


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Trainable parameters split into (no-decay weights, decayed weights, biases).

    Raises:
        TypeError: a trainable parameter of a kind the recipe does not cover.
    """
    no_decay, decay, biases = [], [], []
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if name == "bias":
                biases.append(param)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm) or isinstance(module, (ImplicitA, ImplicitM)):
                no_decay.append(param)
            elif name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear)):
                decay.append(param)
            else:
                raise TypeError(f"parameter {module_name}.{name} ({type(module).__name__}) has no "
                                "weight-decay rule")
    return no_decay, decay, biases


def build_optimizer(model: nn.Module, hyp: Hyperparameters, weight_decay: float) -> torch.optim.SGD:
    """SGD (Nesterov) over the three parameter groups (module docstring)."""
    no_decay, decay, biases = parameter_groups(model)
    optimizer = torch.optim.SGD(no_decay, lr=hyp.lr0, momentum=hyp.momentum, nesterov=True)
    optimizer.add_param_group({"params": decay, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": biases})
    logger.info("optimizer SGD(nesterov, lr0=%g, momentum=%g): %d weights with decay %.3g, "
                "%d without, %d biases", hyp.lr0, hyp.momentum, len(decay), weight_decay,
                len(no_decay), len(biases))
    return optimizer


def cosine_factor(epoch: int, epochs: int, lrf: float) -> float:
    """``lf(epoch)`` of the module docstring."""
    return ((1 - math.cos(epoch * math.pi / epochs)) / 2) * (lrf - 1) + 1


@dataclass(frozen=True)
class StepSettings:
    """Per-iteration optimizer settings: LR per group, momentum, batches per step."""

    lrs: tuple[float, float, float]
    momentum: float
    accumulate: int


def step_settings(iteration: int, epoch: int, epochs: int, hyp: Hyperparameters,
                  warmup_iters: int, batch_size: int) -> StepSettings:
    """Settings at global ``iteration`` (0-based) of ``epoch`` (module docstring)."""
    base = hyp.lr0 * cosine_factor(epoch, epochs, hyp.lrf)
    full_accumulate = hyp.accumulation(batch_size)
    if iteration > warmup_iters or warmup_iters == 0:
        return StepSettings((base, base, base), hyp.momentum, full_accumulate)
    xp = [0, warmup_iters]
    accumulate = max(1, int(np.interp(iteration, xp, [1, hyp.nominal_batch / batch_size]).round()))
    lrs = tuple(float(np.interp(iteration, xp, [hyp.warmup_bias_lr if g == GROUP_BIAS else 0.0, base]))
                for g in range(3))
    momentum = float(np.interp(iteration, xp, [hyp.warmup_momentum, hyp.momentum]))
    return StepSettings(lrs, momentum, accumulate)  # type: ignore[arg-type]


def apply_settings(optimizer: torch.optim.Optimizer, settings: StepSettings) -> None:
    for group, lr in zip(optimizer.param_groups, settings.lrs):
        group["lr"] = lr
        group["momentum"] = settings.momentum
