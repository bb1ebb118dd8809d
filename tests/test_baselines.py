"""Baselines (bnneck, pcb, mgn): output convention, shapes, loss terms, gradients, presets."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reidlab.losses import compute_loss
from reidlab.models import build_model, list_models

NUM_CLASSES = 5
# name -> (number of logits heads, triplet feature dims, retrieval feature dim) for ResNet-18
EXPECTED = {
    "bnneck": (1, [512], 512),
    "pcb": (6, [512], 6 * 256),
    "mgn": (8, [256, 256, 256], 8 * 256),
}


def _batch(batch_size=4, height=96, width=16):  # 6 rows at layer4 (last stride 1): PCB's 6 stripes
    torch.manual_seed(0)
    return {
        "image": torch.randn(batch_size, 3, height, width),
        "pid": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3][:batch_size]),
        "camid": torch.zeros(batch_size, dtype=torch.long),
    }


def _model(name, **cfg):
    torch.manual_seed(0)
    return build_model(name, num_classes=NUM_CLASSES, depth=18, pretrained=False, **cfg)


def test_registered():
    assert {"bnneck", "pcb", "mgn"} <= set(list_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_output_convention_and_shapes(name):
    heads, triplet_dims, feature_dim = EXPECTED[name]
    model = _model(name)
    batch = _batch()
    out = model.train()(batch["image"])
    assert out["features"].shape == (4, feature_dim)
    assert len(out["logits"]) == heads and all(l.shape == (4, NUM_CLASSES) for l in out["logits"])
    assert [t.shape for t in out["triplet"]] == [(4, d) for d in triplet_dims]
    with torch.no_grad():
        eval_out = model.eval()(batch["image"])
    assert set(eval_out) == {"features"} and eval_out["features"].shape == (4, feature_dim)
    assert model.feature_dim == feature_dim
    assert model.requires == set()
    # timm-style split gives the same as forward
    with torch.no_grad():
        assert torch.allclose(model.forward_head(model.forward_features(batch["image"]))["features"], eval_out["features"])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_terms_are_mbgn_eq8(name):
    terms = {t.kind: t for t in _model(name).loss_terms}
    assert set(terms) == {"id", "triplet"}
    assert terms["id"].output == "logits" and terms["id"].weight == 1.0
    assert terms["triplet"].output == "triplet" and terms["triplet"].weight == 2.0
    assert terms["triplet"].options["margin"] == 1.2
    custom = {t.kind: t for t in _model(name, triplet_weight=0.5, margin=0.3).loss_terms}
    assert custom["triplet"].weight == 0.5 and custom["triplet"].options["margin"] == 0.3
    assert [t.kind for t in _model(name, triplet_weight=0).loss_terms] == ["id"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_trainable_parameter_gets_a_finite_gradient(name):
    model = _model(name).train()
    batch = _batch()
    total, parts = compute_loss(model(batch["image"]), batch, model.loss_terms)
    assert torch.isfinite(total) and set(parts) == {"id", "triplet"}
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("backbone.layer1"))


def test_bnneck_follows_bot():
    model = _model("bnneck")
    assert model.neck.classifier.bias is None  # bias-free classifier
    assert not model.neck.bn.bias.requires_grad  # BN shift frozen
    images = _batch()["image"]
    model.eval()
    with torch.no_grad():
        pooled = model.backbone(images).mean(dim=(2, 3))  # reference: GAP of the last map
        reference_after = F.batch_norm(pooled, model.neck.bn.running_mean, model.neck.bn.running_var,
                                       model.neck.bn.weight, model.neck.bn.bias, training=False, eps=model.neck.bn.eps)
        assert torch.allclose(model(images)["features"], reference_after, atol=1e-5)
    before = _model("bnneck", neck_feature="before").eval()
    with torch.no_grad():
        assert torch.allclose(before(images)["features"], before.backbone(images).mean(dim=(2, 3)), atol=1e-5)
    model.train()
    out = model(images)
    assert torch.allclose(out["triplet"][0], model.backbone(images).mean(dim=(2, 3)), atol=1e-5)  # triplet before BN


def test_pcb_stripes_are_average_horizontal_parts():
    # 96 x 32 input, last stride 1: the map is 6 x 2, so stripe i is row i.
    model = _model("pcb", test_feature="pooled").eval()
    images = torch.randn(2, 3, 96, 32)
    with torch.no_grad():
        fmap = model.forward_features(images)
        assert fmap.shape[2] == 6
        reference = torch.cat([fmap[:, :, i, :].mean(dim=-1) for i in range(6)], dim=1)
        assert torch.allclose(model(images)["features"], reference, atol=1e-5)
    reduced = _model("pcb").eval()
    with torch.no_grad():
        fmap = reduced.forward_features(images)
        stripe3 = fmap[:, :, 3:4, :].mean(dim=-1, keepdim=True)  # (B, C, 1, 1)
        expected = reduced.reductions[3](stripe3).flatten(1)
        assert torch.allclose(reduced(images)["features"][:, 3 * 256:4 * 256], expected, atol=1e-5)


def test_mgn_branches_own_their_layer4():
    model = _model("mgn")
    ptrs = [b.layer4[0].conv1.weight.data_ptr() for b in model.branches]
    assert len(set(ptrs)) == 3
    assert not hasattr(model.backbone, "layer4")
    with torch.no_grad():
        shared = model.forward_features(torch.randn(2, 3, 64, 32))
        sizes = [tuple(b.layer4(shared).shape[2:]) for b in model.branches]
    assert sizes == [(2, 1), (4, 2), (4, 2)]  # global branch keeps stride 2


@pytest.mark.parametrize("preset", ["baseline/bnneck", "baseline/pcb", "baseline/mgn"])
def test_presets_build(preset):
    from reidlab.config import TrainConfig
    from reidlab.presets import get_preset

    p = get_preset(preset)
    model = p.build(num_classes=NUM_CLASSES, depth=18, pretrained=False)
    assert model.num_classes == NUM_CLASSES
    cfg = TrainConfig.from_preset(preset, epochs=3)
    assert cfg.model == p.model and cfg.epochs == 3 and cfg.model_cfg == p.model_cfg
