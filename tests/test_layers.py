"""Layer-level checks: exact fast max-pools, fusion equivalence, ReOrg order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detector.layers import Conv, RepConv, ReOrg, max_pool_2x2, max_pool_same


@pytest.mark.parametrize("shape", [(1, 3, 20, 20), (2, 5, 7, 9), (1, 1, 1, 1), (1, 4, 13, 6)])
@pytest.mark.parametrize("kernel", [1, 3, 5, 9, 13])
def test_max_pool_same_is_bit_exact(shape: tuple[int, ...], kernel: int) -> None:
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(max_pool_same(x, kernel), F.max_pool2d(x, kernel, 1, kernel // 2))


@pytest.mark.parametrize("shape", [(1, 3, 20, 20), (2, 5, 7, 9), (1, 2, 3, 5), (1, 4, 160, 160)])
def test_max_pool_2x2_is_bit_exact(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(x), F.max_pool2d(x, 2, 2))


def test_pools_keep_torch_gradients_under_autograd() -> None:
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    max_pool_same(x, 5).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    F.max_pool2d(x, 5, 1, 2).sum().backward()
    assert torch.equal(ours, x.grad)


def test_max_pool_same_rejects_even_kernel() -> None:
    with pytest.raises(ValueError, match="odd"):
        max_pool_same(torch.zeros(1, 1, 4, 4), 4)


@pytest.mark.parametrize("c_in,c_out,stride", [(8, 16, 1), (16, 16, 1), (8, 8, 2)])
def test_repconv_fuse_equals_branches(c_in: int, c_out: int, stride: int) -> None:
    torch.manual_seed(0)
    block = RepConv(c_in, c_out, 3, stride)
    for module in block.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    block.eval()
    x = torch.randn(2, c_in, 12, 12)
    with torch.no_grad():
        expected = block(x)
        block.fuse()
        assert block.rbr_reparam is not None
        torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_conv_fuse_equals_conv_bn() -> None:
    torch.manual_seed(0)
    layer = Conv(4, 6, 3, 2, act="leaky")
    layer.bn.running_var.uniform_(0.5, 2.0)
    layer.bn.running_mean.uniform_(-1, 1)
    layer.eval()
    x = torch.randn(1, 4, 9, 9)
    with torch.no_grad():
        expected = layer(x)
        layer.fuse()
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_reorg_order_is_official() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = ReOrg()(x)
    assert y.shape == (1, 4, 2, 2)
    # (even row, even col), (odd, even), (even, odd), (odd, odd)
    assert y[0, :, 0, 0].tolist() == [0.0, 4.0, 1.0, 5.0]
