"""Pose Pyramid (MSRA Sec. 2.3, Eq. 3-8) and keypoint heat maps: masks, flips, and no NaN ever."""
from __future__ import annotations

import math

import pytest
import torch

from reidlab.data.records import COCO17_NAMES
from reidlab.models.heatmaps import DatasetKeypoints, PoseSource, keypoint_heatmaps
from reidlab.models.pose_pyramid import (
    J2_GROUPS, LEVEL_NAMES, MEMBERSHIP_J2, MEMBERSHIP_J3, PosePyramid, flip_permutation,
    membership_to_keypoints, pool_nodes,
)

H, W = 64, 32  # input size
FH, FW = 8, 4  # feature map size


def random_keypoints(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 17, 2, generator=g) * torch.tensor([W - 1, H - 1])
    return torch.cat([xy.round(), torch.ones(batch, 17, 1)], dim=-1)  # (B, 17, 3)


def drop(keypoints: torch.Tensor, which) -> torch.Tensor:
    out = keypoints.clone()
    out[which] = torch.tensor([-1.0, -1.0, 0.0])
    return out


def flip_keypoints(keypoints: torch.Tensor, width: int) -> torch.Tensor:
    """Independent reference: mirror x and swap left/right names."""
    out = keypoints.clone()
    present = keypoints[..., 2] > 0
    out[..., 0] = torch.where(present, width - 1 - keypoints[..., 0], keypoints[..., 0])
    names = list(COCO17_NAMES)
    swapped = [names.index(n.replace("left", "@").replace("right", "left").replace("@", "right")) for n in names]
    return out[:, swapped]


def test_heatmap_peaks_at_the_keypoint_and_missing_points_are_empty():
    keypoints = drop(random_keypoints(2), (0, [3, 4]))
    heat, present = keypoint_heatmaps(keypoints, (H, W), (H, W), sigma=1.5)
    assert heat.shape == (2, 17, H, W)
    assert not present[0, 3] and not present[0, 4] and present[1].all()
    assert heat[0, 3].abs().sum() == 0 and heat[0, 4].abs().sum() == 0
    for b, j in [(0, 0), (1, 7), (1, 16)]:
        x, y = keypoints[b, j, :2].long().tolist()
        assert heat[b, j, y, x] == pytest.approx(1.0)
        assert int(heat[b, j].argmax()) == y * W + x
    # a hand-computed value next to the peak
    x, y = keypoints[1, 7, :2].long().tolist()
    if x + 1 < W:
        assert float(heat[1, 7, y, x + 1]) == pytest.approx(math.exp(-1 / (2 * 1.5**2)), rel=1e-5)


def test_outside_and_nan_points_count_as_missing():
    keypoints = random_keypoints(1)
    keypoints[0, 0] = torch.tensor([W + 5.0, 3.0, 1.0])
    keypoints[0, 1] = torch.tensor([float("nan"), 3.0, 1.0])
    heat, present = keypoint_heatmaps(keypoints, (H, W), (FH, FW))
    assert not present[0, 0] and not present[0, 1]
    assert torch.isfinite(heat).all() and heat[0, :2].sum() == 0


def test_membership_matrices():
    assert MEMBERSHIP_J2.shape == (10, 17) and MEMBERSHIP_J3.shape == (5, 10)
    assert (MEMBERSHIP_J2.sum(0) >= 1).all(), "every keypoint belongs to some j2 part"
    assert (MEMBERSHIP_J3.sum(0) == 1).all(), "j3 is a partition of j2"
    assert MEMBERSHIP_J2[LEVEL_NAMES["j2"].index("left_forearm"), COCO17_NAMES.index("left_wrist")] == 1
    assert len(J2_GROUPS["head"]) == 5
    j3 = membership_to_keypoints("j3")
    assert (j3.sum(0) >= 1).all() and j3.shape == (5, 17)
    for level in ("j1", "j2", "j3"):  # membership is consistent with the flip permutations
        perm = torch.tensor(flip_permutation(level))
        member = membership_to_keypoints(level)
        torch.testing.assert_close(member[perm][:, torch.tensor(flip_permutation("j1"))], member)


def test_dataset_keypoints_is_a_pose_source_and_checks_shapes():
    source = DatasetKeypoints()
    assert isinstance(source, PoseSource)
    images = torch.zeros(2, 3, H, W)
    with pytest.raises(ValueError, match="keypoints"):
        source(images, None)
    with pytest.raises(ValueError, match=r"\(B, 17, 3\)"):
        source(images, torch.zeros(2, 18, 3))


@pytest.fixture
def pyramid():
    torch.manual_seed(0)
    return PosePyramid(in_channels=16, dim=None, levels=("j1", "j2", "j3"), theta=1, lam=0.6).eval()


def test_attention_rows_sum_to_one_over_present_nodes(pyramid):
    keypoints = drop(random_keypoints(3), (0, [0, 1, 2, 3, 4, 9]))  # sample 0: head and a wrist missing
    keypoints = drop(keypoints, (2, slice(None)))  # sample 2: everything missing
    out = pyramid(torch.randn(3, 16, FH, FW), keypoints, (H, W))
    for level, attention in out.attention.items():
        present = out.presence[level]
        rows = attention.sum(-1)  # (B, n)
        torch.testing.assert_close(rows[present], torch.ones_like(rows[present]))
        assert (rows[~present] == 0).all(), level
        assert (attention * (~present)[:, None, :]).abs().sum() == 0, f"{level}: weight on a missing node"
    head = LEVEL_NAMES["j2"].index("head")
    assert not out.presence["j2"][0, head] and out.presence["j3"][0, 0] == False  # noqa: E712
    for name, dependency in out.dependency.items():
        fine, coarse = name.split("->")
        rows = dependency.sum(-1)
        present = out.presence[fine]
        torch.testing.assert_close(rows[present], torch.ones_like(rows[present]))
        assert (dependency * (~out.presence[coarse])[:, None, :]).abs().sum() == 0
    assert (out.features[2] == 0).all()


def test_intra_layer_attention_matches_eq4(pyramid):
    keypoints = drop(random_keypoints(1), (0, [5, 11]))
    nodes = torch.randn(1, 17, 16)
    present = keypoints[..., 2] > 0
    gat = pyramid.intra["j1"]
    updated, attention = gat(nodes, present)
    projected = nodes[0] @ gat.w6.weight.T
    idx = present[0].nonzero().flatten().tolist()
    for p in idx:
        scores = torch.stack([
            torch.nn.functional.leaky_relu(gat.w7(torch.cat([projected[p], projected[q]])), 0.2)[0] for q in idx
        ])
        expected = torch.softmax(scores, 0)
        torch.testing.assert_close(attention[0, p, idx], expected, rtol=1e-5, atol=1e-6)
        expected_r = torch.relu(sum(w * (gat.w5.weight @ nodes[0, q]) for w, q in zip(expected, idx)))
        torch.testing.assert_close(updated[0, p], expected_r, rtol=1e-4, atol=1e-5)
    assert (updated[0, ~present[0]] == 0).all()


def test_flip_gives_the_mirrored_node_assignment(pyramid):
    keypoints = drop(random_keypoints(2, seed=3), (1, [2, 8, 15]))
    flipped_kp = flip_keypoints(keypoints, W)
    feature_map = torch.randn(2, 16, FH, FW)
    flipped_map = feature_map.flip(-1)
    inputs = pyramid.level_inputs(keypoints, (H, W), (FH, FW))
    flipped_inputs = pyramid.level_inputs(flipped_kp, (H, W), (FH, FW))
    for level in ("j1", "j2", "j3"):
        perm = flip_permutation(level)
        heat, present, positions = inputs[level]
        f_heat, f_present, f_positions = flipped_inputs[level]
        torch.testing.assert_close(f_heat, heat[:, perm].flip(-1))  # mirrored maps, swapped names
        assert torch.equal(f_present, present[:, perm])
        mirrored = positions[:, perm].clone()
        mirrored[..., 0] = torch.where(f_present, W - 1 - mirrored[..., 0], mirrored[..., 0])
        torch.testing.assert_close(f_positions, mirrored)
        torch.testing.assert_close(
            pool_nodes(flipped_map, f_heat, f_present), pool_nodes(feature_map, heat, present)[:, perm]
        )
    # the whole pyramid is equivariant: same F_pose, permuted attention
    out, f_out = pyramid(feature_map, keypoints, (H, W)), pyramid(flipped_map, flipped_kp, (H, W))
    torch.testing.assert_close(f_out.features, out.features, rtol=1e-4, atol=1e-5)
    p1 = flip_permutation("j1")
    torch.testing.assert_close(f_out.attention["j1"], out.attention["j1"][:, p1][:, :, p1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("missing", ["none", "some", "all", "all_but_one"])
def test_missing_keypoints_never_give_nan(missing):
    torch.manual_seed(0)
    pyramid = PosePyramid(in_channels=16, dim=8, theta=2).train()
    keypoints = random_keypoints(4)
    if missing == "some":
        keypoints = drop(drop(keypoints, (0, [0, 5, 6, 13])), (2, slice(0, 12)))
    elif missing == "all":
        keypoints = drop(keypoints, (slice(None), slice(None)))
    elif missing == "all_but_one":
        keypoints = drop(keypoints, (slice(None), slice(1, None)))
    feature_map = torch.randn(4, 16, FH, FW, requires_grad=True)
    out = pyramid(feature_map, keypoints, (H, W))
    assert out.features.shape == (4, 8) and torch.isfinite(out.features).all()
    for tensors in (out.attention, out.dependency, out.node_features, out.positions):
        for value in tensors.values():
            assert torch.isfinite(value).all()
    (out.features.square().sum() + out.features.sum()).backward()
    assert torch.isfinite(feature_map.grad).all()
    for name, param in pyramid.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    if missing == "all":
        assert (out.features == 0).all()


@pytest.mark.parametrize("levels,theta", [(("j1",), 1), (("j1", "j2"), 1), (("j1", "j2"), 2), (("j1", "j2", "j3"), 2)])
def test_levels_and_theta_options(levels, theta):
    torch.manual_seed(0)
    pyramid = PosePyramid(in_channels=16, dim=8, levels=levels, theta=theta, lam=0.6).eval()
    out = pyramid(torch.randn(2, 16, FH, FW), random_keypoints(2), (H, W))
    assert set(out.attention) == set(levels)
    assert len(out.dependency) == max(1, len(levels) - 1)  # CLG-j1 pairs j1 with itself
    assert len(pyramid.clg) == theta
    assert out.features.shape == (2, 8)


def test_clg_j1_theta_1_and_2_are_different_models():
    """Table 2 reports different figures for CLG-j1 at theta 1 and 2: they must not be one network."""
    outputs, keys = {}, {}
    feature_map, keypoints = torch.randn(2, 16, FH, FW), random_keypoints(2)
    for theta in (1, 2):
        torch.manual_seed(0)
        pyramid = PosePyramid(in_channels=16, dim=8, levels=("j1",), theta=theta).eval()
        keys[theta] = set(pyramid.state_dict())
        outputs[theta] = pyramid(feature_map, keypoints, (H, W))
    assert keys[1] < keys[2]
    assert outputs[1].dependency["j1->j1"].shape == (2, 17, 17)
    assert not torch.allclose(outputs[1].features, outputs[2].features)


def test_lambda_weights_the_cross_layer_term():
    """Eq. 8 is affine in lambda: F(lam) = F(0) + lam * (F(1) - F(0))."""
    torch.manual_seed(0)
    pyramid = PosePyramid(in_channels=16, dim=8).eval()
    feature_map, keypoints = torch.randn(2, 16, FH, FW), random_keypoints(2)
    results = {}
    for lam in (0.0, 0.6, 1.0):
        pyramid.lam = lam
        results[lam] = pyramid(feature_map, keypoints, (H, W)).features
    assert not torch.allclose(results[0.0], results[1.0])
    torch.testing.assert_close(results[0.6], results[0.0] + 0.6 * (results[1.0] - results[0.0]), rtol=1e-4, atol=1e-5)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="levels"):
        PosePyramid(16, levels=("j2", "j3"))
    with pytest.raises(ValueError, match="theta"):
        PosePyramid(16, theta=0)


def test_fast_eq5_6_equals_the_literal_form():
    from reidlab.models.pose_pyramid import NodeRelationEmbedding

    torch.manual_seed(0)
    embedding = NodeRelationEmbedding(12)
    nodes, present = torch.randn(3, 17, 12), torch.rand(3, 17) > 0.3
    torch.testing.assert_close(embedding(nodes, present), embedding.reference(nodes, present), rtol=1e-5, atol=1e-5)
