"""Exponential moving average of model weights (Polyak averaging with a warm-up ramp).

After each optimizer step: ``ema = d * ema + (1 - d) * model`` for every floating-point
parameter and buffer (BatchNorm running statistics included), with
``d = decay * (1 - exp(-updates / tau))`` (official ``ModelEMA``: decay 0.9999, tau 2000), so
early averages follow the fast-changing weights closely. Non-float buffers are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """EMA of ``model``; ``ema.model`` is a frozen copy in eval mode.

    Args:
        model: the model being trained (its structure is copied).
        decay: asymptotic decay. tau: ramp length in updates. updates: start count (resume).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0,
                 updates: int = 0) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates,
                "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.tau = float(state["tau"])
