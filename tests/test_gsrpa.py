"""GSRPA (MBGN Eq. 1-7) and CBAM-S."""
import pytest
import torch

from reidlab.models.cbam import CBAMSpatial
from reidlab.models.gsrpa import GSRPA


@pytest.mark.parametrize("size", [(6, 4), (5, 3)])
def test_relation_is_product_of_conv_blocks(size):
    torch.manual_seed(0)
    module = GSRPA(32, size).train()  # batch statistics: an untrained eval-mode BN would saturate the sigmoid
    f = torch.randn(2, 32, *size)
    with torch.no_grad():
        out, details = module(f, return_details=True)
        g = module.involution(f)
        out_1 = module.conv_1(g).flatten(2)  # (B, C', N)
        out_2 = module.conv_2(g).flatten(2)
    N = size[0] * size[1]
    expected = torch.einsum("bci,bcj->bij", out_1, out_2)  # Relation(i, j) = <Conv_1 at pixel i, Conv_2 at pixel j>
    assert details.relation.shape == (2, N, N)
    torch.testing.assert_close(details.relation, expected)
    # Relation_1 reads rows as channels, Relation_2 the transpose: feed them through the mapping layers ourselves
    with torch.no_grad():
        r1 = module.map_1(expected.reshape(2, N, *size))
        r2 = module.map_2(expected.transpose(1, 2).reshape(2, N, *size))
    torch.testing.assert_close(details.relation_1, r1)
    torch.testing.assert_close(details.relation_2, r2)
    # the output is the feature scaled by an attention in (0, 1)
    assert details.attention.shape == (2, 1, *size)
    assert (details.attention > 0).all() and (details.attention < 1).all()
    torch.testing.assert_close(out, details.attention * f)


def test_gsrpa_gradients_reach_every_parameter():
    module = GSRPA(32, (4, 4))
    f = torch.randn(2, 32, 4, 4, requires_grad=True)
    module(f).square().sum().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert f.grad is not None


def test_gsrpa_wrong_size_raises_clear_error():
    module = GSRPA(32, (6, 4))
    with pytest.raises(ValueError, match=r"built for .*6x4"):
        module(torch.randn(1, 32, 8, 4))
    with pytest.raises(ValueError, match="32 channels"):
        module(torch.randn(1, 16, 6, 4))


def test_cbam_spatial_matches_formula():
    torch.manual_seed(0)
    module = CBAMSpatial(8).eval()
    f = torch.randn(2, 8, 5, 7)
    with torch.no_grad():
        out, details = module(f, return_details=True)
        pooled = torch.stack([f.mean(1), f.max(1).values], dim=1)
        expected = torch.sigmoid(module.bn(torch.nn.functional.conv2d(pooled, module.conv.weight, padding=3)))
    torch.testing.assert_close(details.attention, expected)
    torch.testing.assert_close(out, expected * f)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(6, 4), (5, 3)])
def test_fast_relation_maps_match_literal_forward_and_backward(dtype, size):
    from reidlab.models.gsrpa import relation_maps, relation_maps_reference

    torch.manual_seed(0)
    module = GSRPA(32, size).to(dtype).train()
    for layer in (module.map_1, module.map_2):  # non-trivial BN affine, so the check covers it
        torch.nn.init.uniform_(layer[1].weight, 0.5, 1.5)
        torch.nn.init.normal_(layer[1].bias, std=0.1)
    N = size[0] * size[1]
    out_1 = torch.randn(3, 4, N, dtype=dtype, requires_grad=True)  # (B, C', N)
    out_2 = torch.randn(3, 4, N, dtype=dtype, requires_grad=True)
    weights = torch.randn(2, 3, N // 8, *size, dtype=dtype)  # a random loss on both maps

    def run(fn):
        maps = fn(out_1, out_2, module.map_1, module.map_2, size)[-2:]
        loss = sum((w * m).sum() for w, m in zip(weights, maps))
        params = [out_1, out_2, module.map_1[0].weight, module.map_2[0].weight, module.map_1[1].weight]
        return [m.detach() for m in maps], torch.autograd.grad(loss, params)

    fast_maps, fast_grads = run(relation_maps)
    literal_maps, literal_grads = run(relation_maps_reference)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    for fast, literal in zip(fast_maps + list(fast_grads), literal_maps + list(literal_grads)):
        assert fast.abs().max() > 0  # a map that is all zero would make the check empty
        torch.testing.assert_close(fast, literal, **tol)


def test_gsrpa_fast_and_literal_modules_agree_and_details_keep_the_relation():
    torch.manual_seed(0)
    module = GSRPA(32, (6, 4)).double().train()
    f = torch.randn(2, 32, 6, 4, dtype=torch.float64, requires_grad=True)
    fast = module(f)
    (grad_fast,) = torch.autograd.grad(fast.square().sum(), f)
    module.literal_relation = True
    literal = module(f)
    (grad_literal,) = torch.autograd.grad(literal.square().sum(), f)
    torch.testing.assert_close(fast, literal)
    torch.testing.assert_close(grad_fast, grad_literal)
    module.literal_relation = False
    _, details = module(f, return_details=True)
    assert details.relation.shape == (2, 24, 24)


@pytest.mark.parametrize("size,expected_hidden", [((4, 2), 8), ((8, 4), 8), ((64, 32), 64)])
def test_eq7_hidden_width_has_a_minimum(size, expected_hidden):
    module = GSRPA(32, size)
    assert module.attention_conv[0].out_channels == expected_hidden
    rga = GSRPA(32, size, min_hidden=1)  # RGA-S's joint // 8
    joint = 1 + 2 * max(1, size[0] * size[1] // 8)
    assert rga.attention_conv[0].out_channels == max(1, joint // 8)
    with pytest.raises(ValueError, match="min_hidden"):
        GSRPA(32, size, min_hidden=0)


def test_zero_init_attention_starts_every_gate_at_one_half():
    torch.manual_seed(0)
    module = GSRPA(32, (6, 4), zero_init_attention=True).train()
    f = torch.randn(2, 32, 6, 4)
    out, details = module(f, return_details=True)
    torch.testing.assert_close(details.attention, torch.full_like(details.attention, 0.5))
    assert GSRPA(32, (6, 4)).attention_conv[-1].weight.abs().sum() > 0  # default: not zero
