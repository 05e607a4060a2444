"""YOLOv7 building blocks, with the attribute names of the official implementation so that
official state dicts (``model.<i>.conv.weight``, ``model.<i>.rbr_dense.0.weight``, ...) load as
they are.

Sources: Wang, Bochkovskiy, Liao, "YOLOv7: Trainable bag-of-freebies sets new state-of-the-art
for real-time object detectors", CVPR 2023 (arXiv:2207.02696): E-ELAN (sec. 3.1), planned
re-parameterized convolution (RepConv without identity, sec. 4.1), lead/auxiliary heads
(sec. 4.2). RepConv follows Ding et al., "RepVGG", CVPR 2021 (sec. 3.3, structural
re-parameterization). Layer hyper-parameters that are not stored in a state dict are those of the
official release (WongKinYiu/yolov7, ``models/common.py`` and ``Model.initialize_weights``):

* BatchNorm ``eps = 1e-3``, ``momentum = 0.03`` (torch's defaults are 1e-5 / 0.1; using them
  shifts every activation, see the parity fixtures' README);
* activation SiLU, except yolov7-tiny which uses LeakyReLU(negative_slope=0.1);
* "same" padding ``k // 2`` for odd kernels;
* max-pool sizes: MP 2x2 stride 2, SP k x k stride 1 padding k // 2, SPPCSPC pools 5, 9, 13
  (computed by exact, faster kernels in inference: :func:`max_pool_same`, :func:`max_pool_2x2`).

Every module works on ``(B, C, H, W)`` float tensors. :meth:`fuse` methods fold BatchNorm (and
RepConv branches) into a single convolution for inference; they modify the module in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.03
LEAKY_SLOPE = 0.1


def same_padding(kernel_size: int) -> int:
    """Padding that keeps the spatial size for an odd ``kernel_size`` at stride 1."""
    return kernel_size // 2


def make_activation(kind: str) -> nn.Module:
    """``"silu"`` -> SiLU, ``"leaky"`` -> LeakyReLU(0.1), ``"none"`` -> Identity."""
    if kind == "silu":
        return nn.SiLU(inplace=True)
    if kind == "leaky":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown activation {kind!r}; expected 'silu', 'leaky' or 'none'")


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with the official YOLOv7 eps/momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Return a new Conv2d (with bias) equal to ``bn(conv(x))`` in eval mode.

    ``w' = w * gamma / sqrt(var + eps)``, ``b' = beta - gamma * mean / sqrt(var + eps)``
    (+ the scaled conv bias when present), computed in the weights' dtype with the official
    operation order so fused outputs match the official fused model.
    """
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        scale = bn.weight / std
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        bias = bn.bias - bn.weight.mul(bn.running_mean).div(std)
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        fused.bias.copy_(bias)
    fused.requires_grad_(conv.weight.requires_grad)
    return fused


class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; after :meth:`fuse`, Conv2d (bias) -> act.

    Official name ``models.common.Conv``; state keys ``conv.weight``, ``bn.*``.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, same_padding(kernel_size),
                              groups=groups, bias=False)
        self.bn: nn.Module = batch_norm(c_out)
        self.act = make_activation(act)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        """Fold the BatchNorm into the convolution (eval-mode equivalent)."""
        if self.fused:
            return
        self.conv = fold_batch_norm(self.conv, self.bn)
        self.bn = nn.Identity()
        self.fused = True


class RepConv(nn.Module):
    """Re-parameterizable 3x3 conv: ``act(BN(conv3x3(x)) + BN(conv1x1(x)) [+ BN(x)])``.

    The identity branch exists only when ``c_in == c_out`` and ``stride == 1`` (YOLOv7 uses
    RepConv without identity at the heads, the paper's "RepConvN" discussion in sec. 4.1; the
    official module still creates it when shapes allow). :meth:`fuse` merges all branches into
    one 3x3 conv ``rbr_reparam`` (RepVGG sec. 3.3).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: str = "silu") -> None:
        super().__init__()
        if kernel_size != 3:
            raise ValueError(f"RepConv needs kernel_size 3, got {kernel_size}")
        self.groups = groups
        self.act = make_activation(act)
        self.rbr_identity = batch_norm(c_in) if (c_in == c_out and stride == 1) else None
        self.rbr_dense = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, groups=groups, bias=False), batch_norm(c_out))
        self.rbr_1x1 = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, 0, groups=groups, bias=False), batch_norm(c_out))
        self.rbr_reparam: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rbr_reparam is not None:
            return self.act(self.rbr_reparam(x))
        identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.act(self.rbr_dense(x) + self.rbr_1x1(x) + identity)

    def fuse(self) -> None:
        """Merge dense, 1x1 and identity branches into ``rbr_reparam`` (in place)."""
        if self.rbr_reparam is not None:
            return
        dense = fold_batch_norm(self.rbr_dense[0], self.rbr_dense[1])
        one = fold_batch_norm(self.rbr_1x1[0], self.rbr_1x1[1])
        weight = dense.weight.data + F.pad(one.weight.data, [1, 1, 1, 1])
        bias = dense.bias.data + one.bias.data
        if self.rbr_identity is not None:
            id_weight, id_bias = self._identity_as_conv(dense.weight)
            weight = weight + id_weight
            bias = bias + id_bias
        dense.weight.data = weight
        dense.bias.data = bias
        self.rbr_reparam = dense
        del self.rbr_dense, self.rbr_1x1
        self.rbr_identity = None
        self.rbr_dense = None  # type: ignore[assignment]
        self.rbr_1x1 = None  # type: ignore[assignment]

    def _identity_as_conv(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The identity BatchNorm branch as a 3x3 kernel (centre tap) and bias."""
        bn = self.rbr_identity
        c_out, c_in_per_group = like.shape[:2]
        kernel = torch.zeros_like(like)
        for i in range(c_out):
            kernel[i, i % c_in_per_group, 1, 1] = 1.0
        std = torch.sqrt(bn.running_var + bn.eps)
        scale = bn.weight / std
        return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _needs_autograd(x: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _max_shift_1d(x: torch.Tensor, kernel_size: int, dim: int) -> torch.Tensor:
    """Max over a centred window of odd ``kernel_size`` along ``dim`` (-inf padding)."""
    radius = kernel_size // 2
    pad = [radius, radius, 0, 0] if dim == 3 else [0, 0, radius, radius]
    padded = F.pad(x, pad, value=float("-inf"))
    size = x.shape[dim]
    out = padded.narrow(dim, 0, size).clone()
    for shift in range(1, kernel_size):
        torch.maximum(out, padded.narrow(dim, shift, size), out=out)
    return out


def max_pool_same(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, k, stride=1, padding=k // 2)`` for odd ``k``, bit for bit.

    Without autograd it runs as two separable passes of shifted element-wise maxima (max is
    exact, so the result is identical): 10-20x faster than torch's CPU max-pool kernel on the
    SPP maps. With autograd it calls the torch kernel (same gradients as the official code).
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"max_pool_same needs an odd kernel, got {kernel_size}")
    if _needs_autograd(x) or x.dim() != 4:
        return F.max_pool2d(x, kernel_size, 1, kernel_size // 2)
    return _max_shift_1d(_max_shift_1d(x, kernel_size, 3), kernel_size, 2)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2, 2)`` (floor mode), bit for bit; strided-slice maxima without autograd."""
    if _needs_autograd(x) or x.dim() != 4:
        return F.max_pool2d(x, 2, 2)
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    x = x[..., :h, :w]
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., 1::2, ::2]),
                         torch.maximum(x[..., ::2, 1::2], x[..., 1::2, 1::2]))


class MaxPoolSame(nn.Module):
    """k x k max-pool, stride 1, padding k // 2 (see :func:`max_pool_same`)."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_same(x, self.kernel_size)


class MaxPool2x2(nn.Module):
    """2 x 2 max-pool, stride 2 (see :func:`max_pool_2x2`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)


class SPPCSPC(nn.Module):
    """CSP spatial pyramid pooling block (YOLOv7 neck, after YOLOv4-CSP's SPPCSP).

    ``x1 = cv4(cv3(cv1(x)))``; ``y1 = cv6(cv5(cat[x1, pool5(x1), pool9(x1), pool13(x1)]))``;
    ``y2 = cv2(x)``; output ``cv7(cat[y1, y2])`` with ``c_out`` channels (hidden width = c_out).
    """

    def __init__(self, c_in: int, c_out: int, pool_sizes: tuple[int, ...] = (5, 9, 13),
                 act: str = "silu") -> None:
        super().__init__()
        hidden = c_out  # official: int(2 * c2 * e) with e = 0.5
        self.cv1 = Conv(c_in, hidden, 1, 1, act=act)
        self.cv2 = Conv(c_in, hidden, 1, 1, act=act)
        self.cv3 = Conv(hidden, hidden, 3, 1, act=act)
        self.cv4 = Conv(hidden, hidden, 1, 1, act=act)
        self.m = nn.ModuleList(MaxPoolSame(k) for k in pool_sizes)
        self.cv5 = Conv(hidden * (len(pool_sizes) + 1), hidden, 1, 1, act=act)
        self.cv6 = Conv(hidden, hidden, 3, 1, act=act)
        self.cv7 = Conv(2 * hidden, c_out, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [pool(x1) for pool in self.m], 1)))
        y2 = self.cv2(x)
        return self.cv7(torch.cat((y1, y2), dim=1))


class DownC(nn.Module):
    """Downsampling by 2 as ``cat[conv3x3/2(conv1x1(x)), conv1x1(maxpool2(x))]`` (E6/D6/E6E)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 2, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c_in, c_in, 1, 1, act=act)
        self.cv2 = Conv(c_in, c_out // 2, 3, kernel_size, act=act)
        self.cv3 = Conv(c_in, c_out // 2, 1, 1, act=act)
        if kernel_size != 2:
            raise ValueError(f"DownC supports kernel_size 2 (the official configs), got {kernel_size}")
        self.mp = MaxPool2x2()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), dim=1)


class ReOrg(nn.Module):
    """Space-to-depth by 2 (P6 models' stem): ``(B, C, H, W) -> (B, 4C, H/2, W/2)``.

    Channel order: pixels (even row, even col), (odd, even), (even, odd), (odd, odd) — the
    official order; the first conv's weights depend on it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


class Concat(nn.Module):
    """Concatenate a list of tensors along the channel dimension."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


class Shortcut(nn.Module):
    """Element-wise sum of two tensors (E-ELAN merge in yolov7-e6e)."""

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0] + xs[1]


class MP(nn.Module):
    """2x2 max-pool, stride 2. Official ``models.common.MP``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)


class SP(nn.Module):
    """k x k max-pool, stride 1, 'same' padding. Official ``models.common.SP``."""

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_same(x, self.kernel_size)


class ImplicitA(nn.Module):
    """Implicit knowledge added to a feature map (YOLOR, Wang et al. 2021, sec. 3): ``x + a``.

    ``implicit`` has shape ``(1, C, 1, 1)``, initialised N(0, 0.02).
    """

    def __init__(self, channels: int, std: float = 0.02) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=0.0, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(nn.Module):
    """Implicit knowledge multiplied with a feature map (YOLOR): ``m * x``, init N(1, 0.02)."""

    def __init__(self, channels: int, std: float = 0.02) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x
