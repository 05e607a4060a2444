"""YOLOv7 detection heads: ``Detect`` (deploy form), ``IDetect`` (training form with implicit
knowledge) and ``IAuxDetect`` (P6 training form with auxiliary heads).

Box decoding (YOLOv5/YOLOv7 "grid-sensitive" form; official ``models/yolo.py``): for a raw map
``t`` of level ``i`` with stride ``s_i``, cell ``(gx, gy)`` and anchor ``(aw, ah)`` in pixels,
``y = sigmoid(t)`` and

    cx = (2 * y_x - 0.5 + gx) * s_i        cy = (2 * y_y - 0.5 + gy) * s_i
    w  = (2 * y_w) ** 2 * aw               h  = (2 * y_h) ** 2 * ah

so centres may fall 0.5 cell outside their cell and sizes lie in ``(0, 4 * anchor)``; the
remaining columns are sigmoid objectness and per-class sigmoid probabilities (not multiplied by
objectness). Decoded rows are ordered level -> anchor -> y -> x, as in the official code.

State-dict layout (official): ``anchors`` buffer ``(nl, na, 2)`` in grid units (pixels /
stride), ``anchor_grid`` buffer ``(nl, 1, na, 1, 1, 2)`` in pixels, ``m.<i>`` 1x1 convs with
``na * (5 + nc)`` outputs; ``ia.<i>`` / ``im.<i>`` implicit layers; ``m2.<i>`` auxiliary convs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ImplicitA, ImplicitM

# Columns of a decoded prediction row.
COL_CX, COL_CY, COL_W, COL_H, COL_OBJ, COL_CLS0 = 0, 1, 2, 3, 4, 5


class Detect(nn.Module):
    """Deploy-form head: one 1x1 conv per level, then (in eval mode) box decoding.

    Args:
        num_classes: number of classes ``nc``.
        anchors_px: ``(nl, na, 2)`` anchor widths/heights in input pixels.
        strides: ``(nl,)`` level strides in pixels (8, 16, 32[, 64]).
        in_channels: input channels per level.

    Forward: list of ``nl`` maps ``(B, C_i, H/s_i, W/s_i)`` ->
    training: list of raw maps ``(B, na, ny, nx, 5 + nc)`` (logits);
    eval: ``(decoded (B, N, 5 + nc), raw maps)``.
    """

    def __init__(self, num_classes: int, anchors_px: torch.Tensor, strides: torch.Tensor,
                 in_channels: list[int]) -> None:
        super().__init__()
        anchors_px = torch.as_tensor(anchors_px, dtype=torch.float32)
        strides = torch.as_tensor(strides, dtype=torch.float32)
        self.nc = num_classes
        self.no = num_classes + 5
        self.nl, self.na = anchors_px.shape[:2]
        if len(in_channels) < self.nl or strides.numel() != self.nl:
            raise ValueError(
                f"head needs {self.nl} levels: got {len(in_channels)} inputs, {strides.numel()} strides")
        self.register_buffer("stride", strides, persistent=False)
        self.register_buffer("anchors", anchors_px / strides.view(-1, 1, 1))
        self.register_buffer("anchor_grid", anchors_px.clone().view(self.nl, 1, self.na, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in in_channels[: self.nl])
        self._grids: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def initialize_biases(self, class_frequency: torch.Tensor | None = None,
                          img_size: int = 640) -> None:
        """Prior-informed bias init (official ``_initialize_biases``; Lin et al., "Focal loss",
        sec. 4.1): objectness log(8 / (img_size / s)^2) (about 8 objects per image), classes
        log(0.6 / (nc - 0.99)) or log(freq / freq.sum())."""
        for conv, stride in zip(self.m, self.stride.tolist()):
            self._init_conv_bias(conv, stride, class_frequency, img_size)

    def _init_conv_bias(self, conv: nn.Conv2d, stride: float,
                        class_frequency: torch.Tensor | None, img_size: int) -> None:
        with torch.no_grad():
            b = conv.bias.view(self.na, -1)
            b[:, COL_OBJ] += math.log(8 / (img_size / stride) ** 2)
            if class_frequency is None:
                b[:, COL_CLS0:] += math.log(0.6 / (self.nc - 0.99))
            else:
                b[:, COL_CLS0:] += torch.log(class_frequency / class_frequency.sum())

    def _grid(self, nx: int, ny: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (nx, ny, device, dtype)
        grid = self._grids.get(key)
        if grid is None:
            yv, xv = torch.meshgrid(torch.arange(ny, device=device), torch.arange(nx, device=device),
                                    indexing="ij")
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(dtype)
            self._grids[key] = grid
        return grid

    def _to_raw(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Level outputs ``(B, na*no, ny, nx)`` -> ``(B, na, ny, nx, no)``."""
        raw = []
        for x in maps:
            bs, _, ny, nx = x.shape
            raw.append(x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return raw

    def _level_maps(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.m[i](xs[i]) for i in range(self.nl)]

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        """Raw maps ``(B, na, ny, nx, no)`` per level -> decoded ``(B, N, no)`` in input pixels."""
        out = []
        for i, t in enumerate(raw):
            bs, _, ny, nx, _ = t.shape
            if t.dtype == torch.bfloat16:
                # bf16 keeps 8 significant bits: box centres up to 640 px would land on 4 px steps
                t = t.float()
            y = t.sigmoid()
            grid = self._grid(nx, ny, t.device, y.dtype)
            xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
        return torch.cat(out, 1)

    def forward(self, xs: list[torch.Tensor]):
        raw = self._to_raw(self._level_maps(xs))
        if self.training:
            return raw
        return self.decode(raw), raw

    def fuse(self) -> None:
        """Nothing to fold in the deploy head."""


class IDetect(Detect):
    """Training-form head: ``im_i * conv_i(x_i + ia_i)`` (YOLOR implicit knowledge).

    :meth:`fuse` folds ``ia``/``im`` into the conv weights and bias; the result computes the
    same function as a plain :class:`Detect` with those weights (see :func:`fold_implicit`).
    """

    def __init__(self, num_classes: int, anchors_px: torch.Tensor, strides: torch.Tensor,
                 in_channels: list[int]) -> None:
        super().__init__(num_classes, anchors_px, strides, in_channels)
        self.ia = nn.ModuleList(ImplicitA(c) for c in in_channels[: self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in in_channels[: self.nl])
        self.implicit_folded = False

    def _level_maps(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.implicit_folded:
            return super()._level_maps(xs)
        return [self.im[i](self.m[i](self.ia[i](xs[i]))) for i in range(self.nl)]

    def fuse(self) -> None:
        """Fold implicit add/multiply into ``m.<i>`` (in place)."""
        if self.implicit_folded:
            return
        for conv, ia, im in zip(self.m, self.ia, self.im):
            fold_implicit(conv, ia.implicit, im.implicit)
        self.implicit_folded = True


def fold_implicit(conv: nn.Conv2d, add: torch.Tensor, mul: torch.Tensor) -> None:
    """Rewrite a 1x1 ``conv`` in place so ``conv'(x) = mul * conv(x + add)``.

    ``conv(x + a) = W x + (W a + b)``; multiplying by ``m`` scales both rows:
    ``W' = m W``, ``b' = m (b + W a)``. Shapes: ``add (1, C_in, 1, 1)``, ``mul (1, C_out, 1, 1)``.
    """
    with torch.no_grad():
        c_out, c_in = conv.weight.shape[:2]
        w = conv.weight.reshape(c_out, c_in)
        conv.bias += (w @ add.reshape(c_in, 1)).squeeze(1)
        conv.bias *= mul.reshape(c_out)
        conv.weight *= mul.reshape(c_out, 1, 1, 1)


class IAuxDetect(IDetect):
    """P6 training-form head: lead heads as :class:`IDetect` on the first ``nl`` inputs, plus
    auxiliary 1x1 convs ``m2.<i>`` on the next ``nl`` inputs (coarse-to-fine lead-guided
    assignment, YOLOv7 paper sec. 4.2).

    Training forward returns ``2 * nl`` raw maps (lead then auxiliary); eval forward decodes
    only the lead maps. Auxiliary heads are dropped when converting to the deploy form.
    """

    def __init__(self, num_classes: int, anchors_px: torch.Tensor, strides: torch.Tensor,
                 in_channels: list[int]) -> None:
        nl = len(anchors_px)
        if len(in_channels) != 2 * nl:
            raise ValueError(f"IAuxDetect needs {2 * nl} inputs (lead + aux), got {len(in_channels)}")
        super().__init__(num_classes, anchors_px, strides, in_channels[:nl])
        self.m2 = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in in_channels[nl:])

    def initialize_biases(self, class_frequency: torch.Tensor | None = None,
                          img_size: int = 640) -> None:
        super().initialize_biases(class_frequency, img_size)
        for conv, stride in zip(self.m2, self.stride.tolist()):
            self._init_conv_bias(conv, stride, class_frequency, img_size)

    def forward(self, xs: list[torch.Tensor]):
        lead = self._to_raw(self._level_maps(xs[: self.nl]))
        if not self.training:
            return self.decode(lead), lead
        aux = self._to_raw([self.m2[i](xs[self.nl + i]) for i in range(self.nl)])
        return lead + aux
