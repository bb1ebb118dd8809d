"""GSRPA (MBGN Eq. 1-7) and CBAM-S."""
import pytest
import torch

from reidlab.models.cbam import CBAMSpatial
from reidlab.models.gsrpa import GSRPA


@pytest.mark.parametrize("size", [(6, 4), (5, 3)])
def test_relation_is_product_of_conv_blocks(size):
    torch.manual_seed(0)
    module = GSRPA(32, size).eval()
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
