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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,kernel_size", [((2, 32, 5, 6), 7), ((3, 16, 4, 3), 3), ((1, 32, 1, 1), 7)])
def test_fast_involution_matches_reference_forward_and_gradients(dtype, shape, kernel_size):
    from reidlab.models.involution import involution, involution_reference

    torch.manual_seed(0)
    B, C, H, W = shape
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    kernel = torch.randn(B, C // 16, kernel_size**2, H, W, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(shape, dtype=dtype)

    def run(fn):
        out = fn(x, kernel)
        return (out.detach(), *torch.autograd.grad(out, (x, kernel), grad_out))

    for fast, reference in zip(run(involution), run(involution_reference)):
        assert fast.dtype == dtype and fast.abs().max() > 0
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5 * reference.abs().max().item())


def test_fast_involution_gradcheck_and_module_switch():
    from reidlab.models.involution import involution

    torch.manual_seed(0)
    x = torch.randn(1, 16, 3, 4, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(1, 1, 9, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(involution, (x, kernel))
    layer = Involution(32, kernel_size=7).double()
    f = torch.randn(2, 32, 5, 4, dtype=torch.float64)
    fast = layer(f)
    layer.reference = True
    torch.testing.assert_close(fast, layer(f))
    with pytest.raises(ValueError, match="kernel must be"):
        involution(torch.randn(1, 16, 3, 4), torch.randn(1, 1, 9, 3, 5))


def test_fast_involution_bf16_autocast_is_close_to_float32():
    torch.manual_seed(0)
    layer = Involution(32).train()
    x = torch.randn(2, 32, 6, 4)
    expected = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(x)
    assert torch.isfinite(got).all()
    assert (got.float() - expected).abs().max() <= 0.05 * expected.abs().max()


def test_rednet_init_kaiming_fan_out_and_zero_bias():
    torch.manual_seed(0)
    layer = Involution(256, kernel_size=7, group_channels=16)
    reduce, span = layer.reduce[0], layer.span
    # Kaiming normal, fan_out, ReLU gain: std = sqrt(2 / (out_channels * 1 * 1))
    for conv in (reduce, span):
        expected = (2.0 / conv.out_channels) ** 0.5
        assert abs(conv.weight.std().item() - expected) < 0.1 * expected
    assert torch.count_nonzero(span.bias) == 0
    assert torch.all(layer.reduce[1].weight == 1)


def test_pytorch_init_option_keeps_the_default_conv_init_through_mbgn():
    from reidlab.models import build_model

    torch.manual_seed(0)
    layer = Involution(256, kernel_size=7, group_channels=16, init="pytorch")
    span = layer.span  # PyTorch's kaiming_uniform(a=sqrt(5)): uniform(+-1/sqrt(fan_in)), std = 1/sqrt(3 fan_in)
    expected = 1.0 / (3.0 * span.in_channels) ** 0.5
    assert abs(span.weight.std().item() - expected) < 0.1 * expected
    assert torch.count_nonzero(span.bias) > 0  # PyTorch's default bias, which RedNet zeroes
    with pytest.raises(ValueError, match="init must be one of"):
        Involution(32, init="xavier")
    models = {}
    for init in ("rednet", "pytorch"):
        torch.manual_seed(0)
        models[init] = build_model("mbgn", num_classes=4, depth=18, pretrained=False, input_size=(128, 64),
                                   use_global_branch=True, attention="gsrpa", involution_init=init)
    spans = {k: [m.span.bias for m in v.modules() if isinstance(m, Involution)] for k, v in models.items()}
    assert len(spans["rednet"]) == len(spans["pytorch"]) == 2 * 5  # two layers per GSRPA, layer1-3 + layer4_l/_g
    assert all(torch.count_nonzero(b) == 0 for b in spans["rednet"])
    assert all(torch.count_nonzero(b) > 0 for b in spans["pytorch"])


def test_fast_involution_batch_chunks_give_the_same_result(monkeypatch):
    from reidlab.models import involution as module

    torch.manual_seed(0)
    x = torch.randn(5, 32, 4, 3, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(5, 2, 49, 4, 3, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(5, 32, 4, 3, dtype=torch.float64)
    results = []
    for elements in (1 << 19, 1):  # whole batch at once, then one image per chunk
        monkeypatch.setattr(module, "CPU_CHUNK_ELEMENTS", elements)
        assert len(module._batch_chunks(5, 32 * 4 * 9, x.device)) == (1 if elements > 1 else 5)
        out = module.involution(x, kernel)
        results.append((out, *torch.autograd.grad(out, (x, kernel), grad_out)))
    for whole, chunked in zip(*results):
        torch.testing.assert_close(whole, chunked)
