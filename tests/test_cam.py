"""reidlab.viz.cam: Grad-CAM with an embedding-similarity target on tiny random models, the share of a
map inside an occluder mask (checked against hand-computed values), and the per-model share table."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed (pip install grad-cam)")
pytest.importorskip("plotly", reason="plotly is not installed (pip install -e '.[notebooks]')")
from reidlab.models import build_model  # noqa: E402
from reidlab.viz import cam  # noqa: E402

H, W = 128, 64


@pytest.fixture(scope="module")
def bnneck():
    torch.manual_seed(0)
    return build_model("bnneck", num_classes=8, depth=18, pretrained=False)


@pytest.fixture(scope="module")
def cbam_model():
    torch.manual_seed(0)
    return build_model("resnet_gsrpa", num_classes=8, depth=18, pretrained=False, input_size=(H, W),
                       attention="cbam", num_attention_stages=2)


def test_mask_share_hand_made():
    saliency = np.array([[1.0, 3.0], [0.0, 4.0]])  # (2, 2) cells over a (4, 4) mask, each cell 2 x 2 pixels
    mask = np.zeros((4, 4), bool)
    mask[:2, 2:] = True  # exactly cell (0, 1): 3 of 8
    assert cam.mask_share(saliency, mask) == pytest.approx(3 / 8)
    mask[3, 0] = True  # one pixel of cell (1, 0), whose value is 0: no change
    assert cam.mask_share(saliency, mask) == pytest.approx(3 / 8)
    mask[2, 3] = True  # one pixel of cell (1, 1): + 4 of 4 * (1 + 3 + 0 + 4) pixel mass
    assert cam.mask_share(saliency, mask) == pytest.approx((3 * 4 + 4) / (4 * 8))
    uniform = np.ones((8, 4))
    assert cam.mask_share(uniform, mask) == pytest.approx(mask.mean())  # a uniform map: the area fraction
    assert np.isnan(cam.mask_share(np.zeros((2, 2)), mask))
    with pytest.raises(ValueError, match="negative"):
        cam.mask_share(-saliency, mask)


def test_load_mask_from_record_and_errors(tmp_path):
    from PIL import Image

    from reidlab.data.records import ImageRecord

    mask = np.zeros((8, 4), np.uint8)
    mask[:, :2] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    record = ImageRecord(str(tmp_path / "x.png"), 1, 0, extra={"mask_path": str(tmp_path / "m.png")})
    loaded = cam.load_mask(record, (16, 8))
    assert loaded.shape == (16, 8) and loaded[:, :4].all() and not loaded[:, 4:].any()
    with pytest.raises(FileNotFoundError, match="mask_path"):
        cam.load_mask(ImageRecord("y.png", 1, 0))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        cam.load_mask(tmp_path / "missing.png")


def test_similarity_target_and_own_cosine_has_no_gradient():
    feature = torch.randn(16, requires_grad=True)
    cosine = cam.SimilarityTarget(feature.detach(), "cosine")(feature)
    assert cosine.item() == pytest.approx(1.0, abs=1e-6)
    cosine.backward()
    assert feature.grad.abs().max() < 1e-5  # why the own-embedding target is the dot product
    feature.grad = None
    cam.SimilarityTarget(feature.detach(), "dot")(feature).backward()
    torch.testing.assert_close(feature.grad, feature.detach())
    with pytest.raises(ValueError, match="kind"):
        cam.SimilarityTarget(feature, "l2")


def test_grad_cam_on_an_embedding_model(bnneck):
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    bnneck.train()
    maps = cam.grad_cam(bnneck, images)
    assert bnneck.training  # mode restored
    assert maps.shape == (2, H, W) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6 and maps.reshape(2, -1).max(1).min() > 0.5  # not all zero
    with torch.no_grad():
        gallery = bnneck.eval()(images.flip(0))["features"]  # each image's reference: the other one
    towards = cam.grad_cam(bnneck, images, reference=gallery)
    assert towards.shape == (2, H, W) and not np.allclose(towards, maps)
    with pytest.raises(ValueError, match="kind"):
        cam.grad_cam(bnneck, images, kind="l2")
    with pytest.raises(ValueError, match="reference"):
        cam.grad_cam(bnneck, images, reference=gallery[:1].repeat(3, 1))


def test_attention_maps_and_default_layer(cbam_model, bnneck):
    images = torch.randn(2, 3, H, W)
    stage, maps = cam.attention_maps(cbam_model, images)
    assert stage == "layer4" and maps.shape == (2, 8, 4) and ((maps > 0) & (maps < 1)).all()
    assert cam.attention_maps(cbam_model, images, stage="layer3")[1].shape == (2, 8, 4)
    with pytest.raises(ValueError, match="layer1"):
        cam.attention_maps(cbam_model, images, stage="layer1")
    with pytest.raises(ValueError, match="explain"):
        cam.attention_maps(bnneck, images)
    assert cam.default_target_layer(bnneck) is bnneck.backbone.layer4
    with pytest.raises(ValueError, match="target_layer"):
        cam.default_target_layer(torch.nn.Linear(2, 2))


def test_occluder_shares_on_synthetic_records(synthetic_split, cbam_model, bnneck):
    occluded = [r for r in synthetic_split.query + synthetic_split.gallery if r.extra.get("mask_path")][:3]
    if not occluded:
        pytest.skip("the small synthetic split has no occluded image")
    records = occluded + [r for r in synthetic_split.query if not r.extra.get("mask_path")][:1]
    shares = cam.occluder_shares(cbam_model, records, H, W, source="attention")
    assert len(shares) == len(occluded)  # the record without a mask is skipped
    assert shares["share"].between(0, 1).all() and (shares["area"] > 0).all()
    # recompute one share by hand: the attention map, the mask, the definition
    from reidlab.viz import records_batch

    _, maps = cam.attention_maps(cbam_model, records_batch(occluded[:1], H, W)["image"])
    mask = cam.load_mask(occluded[0], (H, W))
    up = np.kron(maps[0].double().numpy(), np.ones((H // maps.shape[1], W // maps.shape[2])))
    assert shares["share"].iloc[0] == pytest.approx((up * mask).sum() / up.sum(), rel=1e-6)
    table = cam.occluder_share_table({"baseline": bnneck, "cbam-s": cbam_model}, occluded, H, W)
    assert list(zip(table.model, table.source)) == [("baseline", "grad-cam"), ("cbam-s", "attention"),
                                                    ("cbam-s", "grad-cam")]
    assert (table.images == len(occluded)).all()
    assert table.ratio.iloc[1] == pytest.approx(table.share.iloc[1] / table.area.iloc[1], rel=1e-3)
