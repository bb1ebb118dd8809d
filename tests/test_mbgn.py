"""MBGN (Fig. 1) and ResNet+GSRPA: shapes, gradients, explain(), input-size errors, every preset trains a step."""
import pytest
import torch

from reidlab.losses import LossTerm, compute_loss
from reidlab.models import build_model
from reidlab.models.mbgn import FUSIONS, MBGN, ResNetGSRPA, stage_sizes

SMALL = (128, 64)


def _all_outputs_loss(out):
    return sum(l.logsumexp(1).sum() for l in out["logits"]) + sum(t.square().mean() for t in out["triplet"])


def _missing_grads(model):
    return [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]


def _expected_dim(model, C=512, part_dim=256, structure_dim=256):
    return C * (1 + model.use_global_branch) + part_dim * len(model.fused_names) + structure_dim * model.use_structure


def test_stage_sizes():
    assert stage_sizes((384, 128)) == [(96, 32), (48, 16), (24, 8), (24, 8)]
    assert stage_sizes((384, 128), last_stride=2)[3] == (12, 4)
    assert stage_sizes((128, 64)) == [(32, 16), (16, 8), (8, 4), (8, 4)]
    conv = torch.nn.Sequential(*list(MBGN(3, depth=18, pretrained=False, input_size=(100, 50), attention=None).children())[:4])
    with torch.no_grad():
        assert tuple(conv(torch.zeros(1, 3, 100, 50)).shape[-2:]) == stage_sizes((100, 50))[2]


def test_mbgn_small_shapes_gradients_and_explain():
    torch.manual_seed(0)
    model = MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL)
    assert set(model.attention) == {"layer1", "layer2", "layer3", "layer4_g", "layer4_l"}
    assert model.fused_names == ["B1", "B1+B2", "B2+B3", "B3+B4", "B4+B5", "B5"]
    images = torch.randn(2, 3, *SMALL)
    out = model(images)
    # global g + global l + 6 fused parts + structure
    assert len(out["logits"]) == 9 and all(l.shape == (2, 7) for l in out["logits"])
    assert [t.shape for t in out["triplet"]] == [(2, 512), (2, 512)]
    assert out["features"].shape == (2, _expected_dim(model))
    _all_outputs_loss(out).backward()
    assert not _missing_grads(model)
    assert model.loss_terms == (LossTerm("id", "logits", 1.0), LossTerm("triplet", "triplet", 2.0, {"margin": 1.2}))

    model.eval()
    assert set(model(images)) == {"features"}
    exp = model.explain(images)
    assert not model.training
    assert exp.attention["layer1"].relation.shape == (2, 512, 512)
    assert exp.attention["layer4_l"].attention.shape == (2, 1, 8, 4)
    assert exp.attention["layer4_g"].relation.shape == (2, 8, 8)
    aabs = exp.aabs[0]
    assert aabs.initial.shape == (2, 4) and aabs.planes.shape == (2, 4) and aabs.trace.shape[1:] == (2, 4)
    assert exp.part_features[0].shape == (2, 5, 512)
    assert exp.fused_features.shape == (2, 6, 512)
    assert exp.structure_similarity.shape == (2, 10, 10)
    torch.testing.assert_close(torch.diagonal(exp.structure_similarity, dim1=1, dim2=2), torch.ones(2, 10))
    torch.testing.assert_close(exp.features, model(images)["features"])
    # fused B1+B2 is the average over the union of the rows of B1 and B2
    s, e = exp.part_starts[0], exp.part_ends[0]
    rows = exp.local_map[0, :, int(s[0, 0]) : int(e[0, 1])].mean(dim=(1, 2))
    torch.testing.assert_close(exp.fused_features[0, 1], rows, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(256, 128), (384, 128)])
def test_mbgn_big_sizes(size):
    # the full model (GSRPA after all four stages, N = 3072 at layer1 for 384x128), ResNet-18, batch 2
    torch.manual_seed(0)
    model = MBGN(num_classes=5, depth=18, pretrained=False, input_size=size)
    images = torch.randn(2, 3, *size)
    out = model(images)
    _all_outputs_loss(out).backward()
    assert out["features"].shape == (2, _expected_dim(model))
    assert not _missing_grads(model)
    H = size[0] // 16
    assert model.attention["layer4_l"].spatial_size == (H, size[1] // 16)
    exp = model.explain(images)
    starts, ends = exp.part_starts[0], exp.part_ends[0]
    assert (starts[:, 0] == 0).all() and (ends[:, -1] == H).all() and (ends > starts).all()
    if size == (384, 128):
        assert exp.aabs[0].initial[0].tolist() == [4, 8, 12, 18]


def test_default_mbgn_builds_gsrpa_for_384x128():
    model = MBGN(num_classes=3, depth=18, pretrained=False)
    sizes = {k: m.spatial_size for k, m in model.attention.items()}
    assert sizes == {"layer1": (96, 32), "layer2": (48, 16), "layer3": (24, 8), "layer4_g": (12, 4), "layer4_l": (24, 8)}


def test_wrong_input_size_raises():
    model = MBGN(num_classes=3, depth=18, pretrained=False, input_size=SMALL, num_attention_stages=1)
    with pytest.raises(ValueError, match=r"built for input_size=\(128, 64\)"):
        model(torch.randn(1, 3, 256, 128))
    net = ResNetGSRPA(num_classes=3, depth=18, pretrained=False, input_size=SMALL, num_attention_stages=1)
    with pytest.raises(ValueError, match=r"built for input_size=\(128, 64\)"):
        net(torch.randn(1, 3, 64, 32))
    # without GSRPA any size works
    free = MBGN(num_classes=3, depth=18, pretrained=False, input_size=SMALL, attention="cbam").eval()
    assert free(torch.randn(1, 3, 96, 48))["features"].ndim == 2
    with pytest.raises(ValueError, match="fusion"):
        MBGN(num_classes=3, depth=18, pretrained=False, fusion="abc")


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_fusion_strategies_unit_counts(fusion):
    expected = {"pcb": 6, "m": 4, "m+f": 6, "m+c": 7, "mgn": 5}[fusion]
    model = MBGN(num_classes=3, depth=18, pretrained=False, input_size=SMALL, attention=None,
                 use_global_branch=False, fusion=fusion, use_structure=False)
    assert len(model.fused_names) == expected == len(model.part_heads)


def test_resnet_gsrpa_table4():
    torch.manual_seed(0)
    for n in (1, 4):
        net = ResNetGSRPA(num_classes=5, depth=18, pretrained=False, input_size=SMALL, num_attention_stages=n)
        assert sorted(net.attention) == [f"layer{k}" for k in range(5 - n, 5)]
    out = net(torch.randn(2, 3, *SMALL))
    assert out["features"].shape == (2, 512) and out["logits"][0].shape == (2, 5)
    _all_outputs_loss(out).backward()
    assert not _missing_grads(net)
    details = net.explain(torch.randn(2, 3, *SMALL))
    assert details["layer1"].relation.shape == (2, 512, 512)


def _mbgn_presets():
    from reidlab.presets import _PRESETS
    import reidlab.presets.mbgn  # noqa: F401  (registers; independent of the other preset files)

    return sorted(n for n, p in _PRESETS.items() if p.paper == "mbgn")


def test_presets_cover_the_tables():
    names = _mbgn_presets()
    assert len(names) == 1 + 6 + 6 + 4
    from reidlab.presets import _PRESETS

    mbgn = _PRESETS["mbgn/table2/MBGN"]
    assert mbgn.reported == {"market1501": {"rank1": 96.5, "mAP": 92.3}}
    assert mbgn.train_cfg["lr"] == 2e-4 and mbgn.train_cfg["schedule"] == "mbgn"
    assert _PRESETS["mbgn/table4/3"].reported == {"cuhk03": {"rank1": 78.3, "mAP": 74.2}}
    assert _PRESETS["mbgn/table3/AABS+M+C"].model_cfg["fusion"] == "m+c"


@pytest.mark.parametrize("name", _mbgn_presets())
def test_every_preset_builds_and_trains_one_step(name):
    from reidlab.presets import _PRESETS

    torch.manual_seed(0)
    preset = _PRESETS[name]
    model = build_model(preset.model, **{**preset.model_cfg, "num_classes": 2, "depth": 18,
                                         "pretrained": False, "input_size": SMALL})
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.train_cfg["lr"])
    batch = {"image": torch.randn(4, 3, *SMALL), "pid": torch.tensor([0, 0, 1, 1]), "camid": torch.tensor([0, 1, 0, 1])}
    out = model(batch["image"])
    loss, parts = compute_loss(out, batch, model.loss_terms)
    assert torch.isfinite(loss) and set(parts) == {"id", "triplet"}
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_mbgn_preset_puts_the_2048d_structure_feature_under_the_triplet():
    from reidlab.presets import get_preset

    torch.manual_seed(0)
    preset = get_preset("mbgn/table2/MBGN")
    assert preset.model_cfg["triplet_features"] == "structure" and preset.model_cfg["structure_dim"] == 2048
    model = preset.build(num_classes=7, depth=18, pretrained=False, input_size=SMALL)
    out = model(torch.randn(4, 3, *SMALL))
    assert [t.shape for t in out["triplet"]] == [(4, 2048)]  # Sec. 3.4: the structure feature alone
    assert out["features"].shape == (4, _expected_dim(model, structure_dim=2048))
    out["triplet"][0].square().mean().backward()
    assert model.structure.mlp[0].weight.grad.abs().sum() > 0  # the triplet trains the structure MLP
    assert model.head_l.bn.weight.grad is None  # ... and not the global heads
    today = MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL, triplet_features="global")
    assert [t.shape for t in today(torch.randn(4, 3, *SMALL))["triplet"]] == [(4, 512), (4, 512)]
    with pytest.raises(ValueError, match="triplet_features"):
        MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL, triplet_features="parts")
    with pytest.raises(ValueError, match="needs use_structure=True"):
        MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL, triplet_features="structure", use_structure=False)


def test_mbgn_options_reach_gsrpa_and_aabs():
    model = MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL, attention_zero_init=True,
                 aabs_fixed_part_means=True)
    assert all(m.attention_conv[-1].weight.abs().sum() == 0 for m in model.attention.values())
    assert all(a.fixed_part_means for a in model.aabs)
    default = MBGN(num_classes=7, depth=18, pretrained=False, input_size=SMALL)
    assert all(m.attention_conv[-1].weight.abs().sum() > 0 for m in default.attention.values())
    assert not any(a.fixed_part_means for a in default.aabs)
