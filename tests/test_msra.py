"""MSRA as a whole (MSRA Sec. 2-3): outputs, losses, errors, explain(), presets, and real Market inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.data.records import AttributeSpec
from reidlab.losses import compute_loss
from reidlab.models import build_model

TINY = dict(depth=18, pretrained=False, input_size=(128, 64), pose_dim=64, attribute_node_dim=16)
SPEC = AttributeSpec(("age", "backpack", "gender"), (4, 2, 2))


def keypoints_for(batch: int, height: int = 128, width: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 17, 2, generator=g) * torch.tensor([width - 1, height - 1])
    return torch.cat([xy, torch.ones(batch, 17, 1)], dim=-1)


def fake_batch(batch: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(batch, 3, 128, 64, generator=g),
        "pid": torch.tensor([0, 0, 1, 1])[:batch],
        "attributes": torch.tensor([[0, 1, 0], [3, -1, 1], [1, 0, 1], [2, 1, -1]])[:batch],
        "keypoints": keypoints_for(batch, seed=seed),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("msra", num_classes=5, attribute_spec=SPEC, **TINY)


def test_outputs_loss_terms_and_gradients(model):
    model.train()
    batch = fake_batch()
    out = model(batch["image"], batch["keypoints"])
    assert out["features"].shape == (4, 64 + 512)  # F_out = [F_fuse, F_g]
    assert [t.shape for t in out["logits"]] == [(4, 5)]
    assert [t.shape for t in out["triplet"]] == [(4, 512)]  # F_g
    assert [tuple(t.shape) for t in out["attribute_logits"]] == [(4, 4), (4, 2), (4, 2)]
    weights = {(t.kind, t.output): t.weight for t in model.loss_terms}
    assert weights == {("triplet", "triplet"): 1.0, ("id", "logits"): 1.2, ("attribute", "attribute_logits"): 0.3}
    attribute_term = next(t for t in model.loss_terms if t.kind == "attribute")
    assert tuple(attribute_term.options["num_classes"]) == (4, 2, 2)
    assert model.requires == {"keypoints"}
    model.zero_grad()
    total, parts = compute_loss(out, batch, model.loss_terms)
    assert torch.isfinite(total)
    total.backward()
    for name in ("arm.mask_conv.weight", "pose_pyramid.intra.j1.w5.weight", "fem.w10.weight",
                 "pose_pyramid.clg.0.weights.1.weight", "attribute_layer4.0.conv1.weight", "layer1.0.conv1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        assert set(model(batch["image"], batch["keypoints"])) == {"features"}


def test_branches_are_as_sec_2_1(model):
    # global branch keeps the last down-sampling, the attribute branch drops it
    x = torch.zeros(1, 3, 128, 64)
    assert model.global_layer4(model.layer3(model.layer2(model.layer1(model.stem(x))))).shape[-2:] == (4, 2)
    assert model.attribute_layer4(model.layer3(model.layer2(model.layer1(model.stem(x))))).shape[-2:] == (8, 4)
    assert model.attribute_layer4 is not model.global_layer4


def test_missing_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="attribute_spec"):
        build_model("msra", num_classes=5, attribute_spec=None, **TINY)
    no_arm = build_model("msra", num_classes=5, attribute_spec=None, use_arm=False, **TINY)
    with pytest.raises(ValueError, match="keypoints"):
        no_arm(torch.randn(2, 3, 128, 64), None)
    baseline = build_model("msra", num_classes=5, use_arm=False, use_pose=False, **TINY).train()
    assert baseline.requires == set()
    out = baseline(torch.randn(2, 3, 128, 64))
    assert "attribute_logits" not in out and out["features"].shape == (2, 512)


def test_all_keypoints_missing_trains_without_nan(model):
    model.train()
    batch = fake_batch()
    batch["keypoints"][:] = torch.tensor([-1.0, -1.0, 0.0])
    batch["keypoints"][1, :3] = torch.tensor([10.0, 20.0, 1.0])  # a few points in one image
    model.zero_grad()
    total, _ = compute_loss(model(batch["image"], batch["keypoints"]), batch, model.loss_terms)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_explain(model):
    batch = fake_batch()
    batch["keypoints"][0, :5, 2] = 0  # no head in image 0
    model.train()
    e = model.explain(batch["image"], batch["keypoints"])
    assert model.training, "explain restores the mode"
    assert e.attribute_masks.shape == (4, 3, 8, 4)
    assert e.attribute_predictions.shape == (4, 3) and e.attribute_names == SPEC.names
    assert [p.shape for p in e.attribute_probabilities] == [(4, 4), (4, 2), (4, 2)]
    assert e.attribute_adjacency.shape == (4, 3, 3)
    assert {k: tuple(v.shape) for k, v in e.intra_attention.items()} == {"j1": (4, 17, 17), "j2": (4, 10, 10), "j3": (4, 5, 5)}
    assert {k: tuple(v.shape) for k, v in e.cross_dependency.items()} == {"j1->j2": (4, 17, 10), "j2->j3": (4, 10, 5)}
    assert e.node_positions["j1"].shape == (4, 17, 2) and e.node_positions["j3"].shape == (4, 5, 2)
    torch.testing.assert_close(e.node_positions["j1"][1], batch["keypoints"][1, :, :2])
    assert (e.node_positions["j1"][0, :5] == -1).all() and not e.node_presence["j2"][0, 0]
    assert e.gate.shape == (4, 64) and ((e.gate > 0) & (e.gate < 1)).all()
    assert e.heatmaps["j1"].shape == (4, 17, 4, 2)
    assert len(e.node_names["j2"]) == 10


# --------------------------------------------------------------------- presets on the synthetic data
@pytest.fixture(scope="module")
def synthetic_batch(synthetic_split):
    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.transforms import build_transforms

    dataset = ReIDDataset(synthetic_split.train, build_transforms(128, 64, train=True), synthetic_split.attribute_spec)
    pids = np.array(dataset.pids)
    first, second = np.unique(pids)[:2]
    indices = [*np.flatnonzero(pids == first)[:2], *np.flatnonzero(pids == second)[:2]]
    torch.manual_seed(0)
    samples = [dataset[int(i)] for i in indices]
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def msra_presets():
    from reidlab.presets import list_presets

    return list_presets(paper="msra")


def test_preset_catalogue():
    from reidlab.presets import get_preset

    names = msra_presets()
    for theta in (1, 2):
        for row in ("CLG-j1", "CLG-j1j2", "CLG-j1j2j3"):
            assert f"msra/table2/theta{theta}/{row}" in names
    assert [f"msra/fig3/lambda={v}" for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)] == [n for n in names if "fig3" in n]
    best = get_preset("msra/table2/theta1/CLG-j1j2j3")
    assert best.reported == {"market1501": {"rank1": 95.9, "mAP": 90.6}, "dukemtmc": {"rank1": 92.2}}
    assert get_preset("msra/table1/MSRA").reported["dukemtmc"] == {"rank1": 92.2, "mAP": 81.6}
    assert get_preset("msra/table2/theta2/CLG-j1").reported["market1501"] == {"rank1": 93.6, "mAP": 88.7}
    assert best.train_cfg["lr"] == 0.01 and best.train_cfg["schedule"] == "step" and best.model_cfg["lam"] == 0.6
    assert best.train_cfg["batch_p"] * best.train_cfg["batch_k"] == 32


@pytest.mark.parametrize("name", msra_presets())
def test_every_preset_builds_and_trains_one_step(name, synthetic_split, synthetic_batch):
    from reidlab.presets import get_preset

    preset = get_preset(name)
    torch.manual_seed(0)
    model = preset.build(num_classes=synthetic_split.num_train_pids, attribute_spec=synthetic_split.attribute_spec,
                         depth=18, pretrained=False, input_size=(128, 64), pose_dim=32, attribute_node_dim=8)
    model.train()
    extra = {"keypoints": synthetic_batch["keypoints"]} if "keypoints" in model.requires else {}
    optimizer = torch.optim.SGD(model.parameters(), lr=preset.train_cfg["lr"])  # SGD: a cheap step; Adam is the trainer's job
    total, parts = compute_loss(model(synthetic_batch["image"], **extra), synthetic_batch, model.loss_terms)
    assert torch.isfinite(total), parts
    before = model.neck.classifier.weight.detach().clone()
    total.backward()
    optimizer.step()
    assert not torch.equal(before, model.neck.classifier.weight)


def test_synthetic_batch_feeds_msra(synthetic_split, synthetic_batch, model):
    assert synthetic_split.has_attributes and synthetic_split.has_keypoints
    assert synthetic_batch["attributes"].shape == (4, len(synthetic_split.attribute_spec))
    assert (synthetic_batch["attributes"] >= 0).any(dim=1).all()
    m = build_model("msra", num_classes=synthetic_split.num_train_pids,
                    attribute_spec=synthetic_split.attribute_spec, **TINY)
    e = m.explain(synthetic_batch["image"], synthetic_batch["keypoints"])
    assert e.node_presence["j1"].sum(1).min() >= 1
    assert (e.heatmaps["j1"].sum(dim=(-2, -1)) > 0).sum(1).min() >= 1


# --------------------------------------------------------------------- real Market-1501 annotation files
def test_real_market_files_give_msra_inputs(shared_data, tmp_path):
    from PIL import Image

    from conftest import shared_file
    from reidlab.data import load_market1501
    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.transforms import build_transforms

    folder = "annotations/market1501"
    attribute_file = shared_file(shared_data, f"{folder}/market_attribute.mat")
    train_csv = shared_file(shared_data, f"{folder}/market-annotation-train.csv")
    test_csv = shared_file(shared_data, f"{folder}/market-annotation-test.csv")
    train_list = shared_file(shared_data, f"{folder}/train.txt")

    train_names = [line.split()[0].split("/")[-1] for line in train_list.read_text().splitlines()[:6]]
    test_names = [line.split(":")[0] for line in test_csv.read_text().splitlines()[1:200]]
    test_names = [n for n in test_names if not n.startswith(("0000", "-1"))][:4]
    root = tmp_path / "Market-1501"
    placeholder = Image.new("RGB", (64, 128), (120, 110, 100))  # the real crops' size (w x h)
    for sub, names in (("bounding_box_train", train_names), ("bounding_box_test", test_names), ("query", test_names[:2])):
        (root / sub).mkdir(parents=True)
        for name in names:
            placeholder.save(root / sub / name)

    split = load_market1501(root, attribute_file=attribute_file, keypoint_files=[train_csv, test_csv])
    assert len(split.train) == 6 and split.attribute_spec is not None and len(split.attribute_spec) == 27
    dataset = ReIDDataset(split.train, build_transforms(128, 64, train=False), split.attribute_spec)
    samples = [dataset[i] for i in range(4)]
    batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
    assert batch["attributes"].shape == (4, 27) and (batch["attributes"] >= 0).all()

    torch.manual_seed(0)
    model = build_model("msra", num_classes=split.num_train_pids, attribute_spec=split.attribute_spec, **TINY)
    e = model.explain(batch["image"], batch["keypoints"])
    assert e.node_presence["j1"].sum(1).min() >= 5, "real keypoints give non-empty nodes"
    assert (e.heatmaps["j1"].sum(dim=(-2, -1))[e.node_presence["j1"]] > 0).all()
    assert len(e.attribute_probabilities) == 27 and e.attribute_probabilities[0].shape == (4, 4)  # age: 4 classes
    model.train()
    total, parts = compute_loss(model(batch["image"], batch["keypoints"]), batch, model.loss_terms)
    assert torch.isfinite(total) and "attributes" in parts


def test_msra_readings_options(synthetic_split):
    from reidlab.presets import get_preset

    spec = synthetic_split.attribute_spec
    common = dict(num_classes=8, attribute_spec=spec, depth=18, pretrained=False, input_size=(128, 64))
    wide = build_model("msra", paper_width=True, **common)
    assert wide.feature_dim == 2 * 512 and wide.pose_dim == 512  # ResNet-18: F_g 512 -> F_out 2 x 512
    narrow = build_model("msra", pose_dim=64, **common)
    assert narrow.feature_dim == 64 + 512
    mean_terms = {t.name: t.weight for t in build_model("msra", **common).loss_terms}
    sum_terms = {t.name: t.weight for t in build_model("msra", attribute_reduction="sum", **common).loss_terms}
    assert sum_terms["attributes"] == pytest.approx(mean_terms["attributes"] * len(spec))
    with pytest.raises(ValueError, match="attribute_reduction"):
        build_model("msra", attribute_reduction="max", **common)
    fine = build_model("msra", global_last_stride=1, pose_dim=32, **common).eval()
    images = torch.randn(1, 3, 128, 64)
    keypoints = torch.full((1, 17, 3), -1.0)
    keypoints[..., 2] = 0
    keypoints[0, 5] = torch.tensor([20.0, 40.0, 1.0])
    assert fine.explain(images, keypoints).heatmaps["j1"].shape[-2:] == (8, 4)  # 4 x 2 with stride 2
    for name in ("msra/readings/paper_width", "msra/readings/attribute_sum", "msra/readings/global_last_stride1"):
        assert get_preset(name).model == "msra"


def test_msra_refuses_inputs_too_small(synthetic_split):
    common = dict(num_classes=8, attribute_spec=synthetic_split.attribute_spec, depth=18, pretrained=False)
    with pytest.raises(ValueError, match="too small"):
        build_model("msra", input_size=(16, 8), **common)
    model = build_model("msra", input_size=(64, 32), pose_dim=32, **common).eval()
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, 16, 16), torch.zeros(1, 17, 3))
