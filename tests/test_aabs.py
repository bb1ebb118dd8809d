"""AABS (MBGN Algorithm 1): moves planes to known boundaries, keeps parts valid, batched == one by one."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reidlab.models.aabs import AABS, BODY_RATIO, adjust_split_planes, initial_planes, plane_bounds, pool_regions


def make_map(boundaries, height, width=4, channels=8, noise=0.05, seed=0):
    """Rows of distinct kinds (one-hot-ish channel profiles) with kind changes at ``boundaries``."""
    g = torch.Generator().manual_seed(seed)
    kinds = torch.zeros(height, dtype=torch.long)
    for b in boundaries:
        kinds[b:] += 1
    profiles = torch.eye(channels)[: len(boundaries) + 1] + 0.1
    rows = profiles[kinds]  # (H, C)
    fmap = rows.t()[:, :, None].expand(channels, height, width)
    return (fmap + noise * torch.rand(channels, height, width, generator=g)).unsqueeze(0)  # (1, C, H, W)


def reference_aabs(fmap, ratio, max_iters):
    """Algorithm 1 with plain Python loops on one map (1, C, H, W)."""
    _, C, H, W = fmap.shape
    planes = initial_planes(H, ratio)
    n = len(planes)

    def gap(a, b):
        return fmap[0, :, a:b, :].mean(dim=(1, 2))

    def cos(x, y):
        return float(torch.nn.functional.cosine_similarity(x, y, dim=0))

    for _ in range(max_iters):
        before = list(planes)
        for i in range(n):
            top = planes[i - 1] if i > 0 else 0
            bottom = planes[i + 1] if i < n - 1 else H
            l = planes[i]
            f_i, f_next = gap(top, l), gap(l, bottom)
            r0, r1 = gap(l - 1, l), gap(l, l + 1)
            if cos(r0, f_i) < cos(r0, f_next) and cos(r1, f_i) < cos(r1, f_next) and l - 1 > top:
                planes[i] = l - 1
            elif cos(r0, f_i) > cos(r0, f_next) and cos(r1, f_i) > cos(r1, f_next) and l + 1 < bottom:
                planes[i] = l + 1
        if planes == before:
            break
    return planes


def test_initial_planes_body_ratio():
    assert initial_planes(24) == [4, 8, 12, 18]  # 384x128 input: 4, 4, 4, 6, 6 rows
    assert initial_planes(12, (1,) * 6) == [2, 4, 6, 8, 10]
    planes = initial_planes(5)  # tiny map: still one row per part
    assert planes == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="height 4"):
        initial_planes(4)


@pytest.mark.parametrize("true_boundary", [10, 14, 12, 7, 17])
def test_single_plane_moves_to_boundary_and_stops(true_boundary):
    fmap = make_map([true_boundary], 24)
    result = adjust_split_planes(fmap, ratio=(1, 1), return_trace=True)
    assert result.initial.tolist() == [[12]]
    assert result.planes.tolist() == [[true_boundary]]
    steps = abs(true_boundary - 12)
    assert result.iterations == steps  # one row per repetition, then it stops
    assert result.trace.shape == (steps + 1, 1, 1)
    assert [int(t) for t in result.trace[:, 0, 0]] == list(range(12, true_boundary - 1, -1) if true_boundary < 12 else range(12, true_boundary + 1))


def test_body_planes_move_to_known_boundaries():
    # initial planes 4, 8, 12, 18; true body boundaries off by one to four rows
    truth = [3, 9, 11, 17]
    fmap = make_map(truth, 24)
    result = AABS(BODY_RATIO)(fmap)
    assert result.initial.tolist() == [[4, 8, 12, 18]]
    assert result.planes.tolist() == [truth]
    truth = [2, 6, 14, 21]
    assert AABS(BODY_RATIO)(make_map(truth, 24, seed=3)).planes.tolist() == [truth]


def test_disabled_aabs_keeps_initial_planes():
    result = AABS(BODY_RATIO, enabled=False)(make_map([3, 9, 11, 17], 24))
    assert result.planes.tolist() == [[4, 8, 12, 18]]


def test_matches_plain_reference_and_batched_equals_one_by_one():
    torch.manual_seed(0)
    fmaps = torch.rand(6, 16, 24, 8) ** 3  # post-ReLU-like, non-negative
    fmaps[:3] += make_map([5, 7, 13, 20], 24, width=8, channels=16)
    batched = adjust_split_planes(fmaps, BODY_RATIO)
    for b in range(fmaps.shape[0]):
        single = adjust_split_planes(fmaps[b : b + 1], BODY_RATIO)
        assert single.planes.tolist() == batched.planes[b : b + 1].tolist()
        assert batched.planes[b].tolist() == reference_aabs(fmaps[b : b + 1], BODY_RATIO, 24)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(min_value=6, max_value=30),
    batch=st.integers(min_value=1, max_value=4),
    ratio=st.sampled_from([BODY_RATIO, (1.0,) * 6, (1.0, 1.0), (1.0, 2.0, 1.0)]),
    seed=st.integers(min_value=0, max_value=10_000),
    signed=st.booleans(),
)
def test_planes_stay_ordered_and_parts_non_empty(height, batch, ratio, seed, signed):
    g = torch.Generator().manual_seed(seed)
    fmaps = torch.randn(batch, 4, height, 3, generator=g)
    if not signed:
        fmaps = fmaps.relu()
    result = adjust_split_planes(fmaps, ratio, return_trace=True)
    for planes in result.trace:  # every repetition, not only the last
        starts, ends = plane_bounds(planes, height)
        assert (ends - starts >= 1).all()
        assert (starts[:, 0] == 0).all() and (ends[:, -1] == height).all()
    assert result.iterations <= height
    assert torch.equal(result.trace[-1], result.planes)


def test_pool_regions_is_differentiable_and_correct():
    torch.manual_seed(0)
    fmap = torch.randn(2, 3, 10, 4, requires_grad=True)
    planes = torch.tensor([[3, 7], [2, 9]])
    starts, ends = plane_bounds(planes, 10)
    avg = pool_regions(fmap, starts, ends, "avg")
    mx = pool_regions(fmap, starts, ends, "max")
    for b in range(2):
        for p in range(3):
            a, e = int(starts[b, p]), int(ends[b, p])
            torch.testing.assert_close(avg[b, p], fmap[b, :, a:e].mean(dim=(1, 2)))
            torch.testing.assert_close(mx[b, p], fmap[b, :, a:e].amax(dim=(1, 2)))
    (avg.sum() + mx.sum()).backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0


def reference_aabs_fixed_means(fmap, ratio, max_iters):
    """Algorithm 1 read literally: lines 5-9 compute GAP(p_i) of the initial parts once, the loop reuses them."""
    _, C, H, W = fmap.shape
    planes = initial_planes(H, ratio)
    n = len(planes)
    bounds = [0] + list(planes) + [H]
    means = [fmap[0, :, bounds[k]:bounds[k + 1], :].mean(dim=(1, 2)) for k in range(n + 1)]

    def cos(x, y):
        return float(torch.nn.functional.cosine_similarity(x, y, dim=0))

    for _ in range(max_iters):
        before = list(planes)
        for i in range(n):
            top = planes[i - 1] if i > 0 else 0
            bottom = planes[i + 1] if i < n - 1 else H
            l = planes[i]
            r0, r1 = fmap[0, :, l - 1, :].mean(dim=1), fmap[0, :, l, :].mean(dim=1)
            if cos(r0, means[i]) < cos(r0, means[i + 1]) and cos(r1, means[i]) < cos(r1, means[i + 1]) and l - 1 > top:
                planes[i] = l - 1
            elif cos(r0, means[i]) > cos(r0, means[i + 1]) and cos(r1, means[i]) > cos(r1, means[i + 1]) and l + 1 < bottom:
                planes[i] = l + 1
        if planes == before:
            break
    return planes


def test_fixed_part_means_is_the_literal_algorithm_and_differs_from_the_default():
    torch.manual_seed(0)
    fmaps = torch.randn(40, 16, 24, 1).cumsum(dim=2).expand(-1, -1, -1, 8)  # rows drifting down the map
    literal = adjust_split_planes(fmaps, BODY_RATIO, fixed_part_means=True)
    default = adjust_split_planes(fmaps, BODY_RATIO)
    for b in range(fmaps.shape[0]):
        assert literal.planes[b].tolist() == reference_aabs_fixed_means(fmaps[b : b + 1], BODY_RATIO, 24)
    differ = (literal.planes != default.planes).any(dim=1).float().mean().item()
    assert 0 < differ < 1  # the two readings are different algorithms, yet agree on many maps
    module = AABS(fixed_part_means=True)
    assert module(fmaps).planes.tolist() == literal.planes.tolist()
    assert "fixed_part_means=True" in repr(module)
