"""Involution (Li et al. 2021) against a plain loop-over-pixels reference."""
import pytest
import torch
import torch.nn.functional as F

from reidlab.models.involution import Involution, InvolutionBlock


def reference_involution(layer: Involution, x: torch.Tensor) -> torch.Tensor:
    """Li et al. Eq. 4 written out pixel by pixel, channel by channel."""
    B, C, H, W = x.shape
    K = layer.kernel_size
    group_size = C // layer.groups
    kernel = layer.span(layer.reduce(x))  # (B, G*K*K, H, W), group-major
    padded = F.pad(x, (K // 2,) * 4)
    out = torch.zeros_like(x)
    for b in range(B):
        for i in range(H):
            for j in range(W):
                window = padded[b, :, i : i + K, j : j + K]  # (C, K, K)
                group_kernels = kernel[b, :, i, j].view(layer.groups, K, K)  # (G, K, K)
                per_channel = group_kernels.repeat_interleave(group_size, dim=0)  # channel c uses group c // group_size
                out[b, :, i, j] = (per_channel * window).sum(dim=(1, 2))
    return out


@pytest.mark.parametrize("size,kernel_size", [((5, 6), 7), ((4, 3), 3)])
def test_involution_matches_pixel_loop(size, kernel_size):
    torch.manual_seed(0)
    layer = Involution(32, kernel_size=kernel_size, group_channels=16).eval()
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        expected = reference_involution(layer, x)
        got = layer(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_involution_is_spatially_specific():
    # the same pixel content at two places gives different outputs when its neighbours differ
    torch.manual_seed(1)
    layer = Involution(16, kernel_size=3, group_channels=16).eval()
    x = torch.randn(1, 16, 6, 6)
    y = layer(x)
    assert not torch.allclose(y[..., 1, 1], y[..., 4, 4])


@pytest.mark.parametrize("size", [(7, 5), (8, 4), (1, 1)])
def test_involution_block_keeps_shape_and_backprops(size):
    block = InvolutionBlock(32)
    x = torch.randn(2, 32, *size, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_involution_rejects_bad_channels():
    with pytest.raises(ValueError, match="divisible by group_channels"):
        Involution(24, group_channels=16)
    layer = Involution(32)
    with pytest.raises(ValueError, match="32 channels"):
        layer(torch.randn(1, 16, 4, 4))
