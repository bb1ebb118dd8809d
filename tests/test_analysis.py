"""reidlab.viz.analysis: the aggregations behind notebooks 01-03 (AABS over a split, fusion units,
structure-similarity pairs, involution kernels, attention per stage). Tiny random models."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed")
from reidlab.models import build_model  # noqa: E402
from reidlab.models.aabs import adjust_split_planes, initial_planes  # noqa: E402
from reidlab.viz import analysis as A  # noqa: E402

H, W = 128, 64


@pytest.fixture(scope="module")
def mbgn():
    torch.manual_seed(0)
    return build_model("mbgn", num_classes=8, depth=18, pretrained=False, input_size=(H, W)).eval()


def test_aabs_plane_movement_matches_explain(mbgn, synthetic_split):
    records = synthetic_split.query[:5]
    table = A.aabs_plane_movement(mbgn, records, H, W, batch_size=2)
    assert len(table) == 5 * 4 and set(table.plane) == {0, 1, 2, 3}
    assert (table.map_rows == 8).all()  # Branch l's map at 128x64
    from reidlab.viz import records_batch

    ex = mbgn.explain(records_batch(records, H, W)["image"])
    final = table.pivot(index="image", columns="plane", values="final").to_numpy()
    np.testing.assert_array_equal(final, ex.aabs[0].planes.numpy())
    assert (table["shift"] == table.final - table.initial).all()
    assert (table.initial == np.tile(initial_planes(8), 5)).all()
    assert list(table.pid) == [r.pid for r in records for _ in range(4)]
    assert not mbgn.aabs[0]._forward_hooks  # the hook is gone


def test_plane_movement_summary_counts():
    moved = pd.DataFrame({"image": [0, 0, 1, 1], "plane": [0, 1, 0, 1], "shift": [1, 0, 0, 0], "repetitions": [1, 1, 0, 0]})
    still = moved.assign(shift=0, repetitions=0)
    summary = A.plane_movement_summary({"trained": moved, "untrained": still})
    assert summary.loc[("trained", "l0"), "moved (%)"] == 50.0
    assert summary.loc[("trained", "l1"), "moved (%)"] == 0.0
    assert summary.loc[("trained", "any"), "moved (%)"] == 50.0
    assert summary.loc[("trained", "any"), "mean repetitions"] == 0.5
    assert summary.loc[("untrained", "any"), "moved (%)"] == 0.0
    fig = A.plane_movement_figure({"trained": moved, "untrained": still})
    shift_bars = [t for t in fig.data if t.xaxis == "x"]
    assert [list(t.y) for t in shift_bars] == [[3, 1], [4, 0]]  # shifts 0 and 1
    with pytest.raises(KeyError, match="lacks columns"):
        A.plane_movement_summary(moved.drop(columns="shift"))


def test_fusion_units_follow_planes_and_table3():
    assert A.fusion_units("m+f", None, 24) == [("B1", 0, 4), ("B1+B2", 0, 8), ("B2+B3", 4, 12), ("B3+B4", 8, 18),
                                               ("B4+B5", 12, 24), ("B5", 18, 24)]
    moved = A.fusion_units("m+f", [5, 8, 12, 18], 24)
    assert moved[0] == ("B1", 0, 5) and moved[2] == ("B2+B3", 5, 12)
    assert [u[0] for u in A.fusion_units("m+c", None, 24)][-1] == "B3+B4+B5"
    assert len(A.fusion_units("pcb", [5, 8, 12, 18], 24)) == 6  # fixed stripes ignore the AABS planes
    assert A.fusion_units("mgn", None, 24)[:2] == [("H1", 0, 12), ("H2", 12, 24)]
    with pytest.raises(ValueError, match="unknown fusion"):
        A.fusion_units("xyz")
    fig = A.fusion_strategies_figure(torch.rand(3, H, W), [5, 8, 12, 18], 24, reported={"m+f": (92.8, 81.0)})
    assert sum(isinstance(t, go.Image) for t in fig.data) == 5
    assert "paper 92.8 / 81.0" in fig.layout.annotations[2].text


def test_structure_pair_distances_separates_same_and_different():
    base = np.eye(10)[None].repeat(4, 0)
    base[2:, 0, 1] = base[2:, 1, 0] = 0.9  # ids 1 differ from ids 0 in one entry
    table = A.structure_pair_distances(base, [0, 0, 1, 1])
    assert table.same.sum() == 2 and (~table.same).sum() == 4
    assert (table[table.same].distance == 0).all()
    assert np.allclose(table[~table.same].distance, 0.9 / 45)
    with pytest.raises(ValueError, match="needs"):
        A.structure_pair_distances(base, [0, 1])


def test_involution_kernels_at_pixel(mbgn):
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    kernels = A.involution_kernels(mbgn, images, "layer1", (3, 5), index=1)
    assert kernels.shape == (64 // 16, 7, 7)
    captured = []
    inv = mbgn.attention["layer1"].involution.inv1
    handle = mbgn.layer1.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        mbgn(images[1:2])
    handle.remove()
    expected = inv.kernels(captured[0])[0, :, :, 3, 5].reshape(-1, 7, 7)
    np.testing.assert_allclose(kernels, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    other = A.involution_kernels(mbgn, images, "layer1", (20, 2), index=1)
    assert not np.allclose(kernels, other)  # spatially specific: another pixel, other kernels
    with pytest.raises(ValueError, match="outside"):
        A.involution_kernels(mbgn, images, "layer1", (99, 0))
    with pytest.raises(ValueError, match="no GSRPA at stage"):
        A.involution_kernels(mbgn, images, "layer9", (0, 0))
    fig = A.involution_kernel_figure(images[1], kernels, (3, 5), (32, 16), groups=3)
    assert sum(isinstance(t, go.Heatmap) for t in fig.data) == 3


def test_attention_statistics_and_stage_figure(mbgn):
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(2))
    ex = mbgn.explain(images)
    flat = torch.full((2, 1, 8, 4), 0.5)
    stats = A.attention_statistics({"model": ex.attention, "flat": {"layer4_l": flat}})
    assert stats.loc[("flat", "layer4_l"), "std over pixels"] == 0.0
    assert stats.loc[("flat", "layer4_l"), "mean"] == 0.5
    assert stats.loc[("model", "layer1"), "map"] == "32x16"
    expected = ex.attention["layer2"].attention[:, 0].flatten(1).std(dim=1, unbiased=False).mean()
    assert stats.loc[("model", "layer2"), "std over pixels"] == pytest.approx(float(expected), abs=1e-3)
    fig = A.attention_stages_figure(images, {"a": ex.attention, "b": ex.attention}, index=1, stages=["layer1", "layer3"])
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == 4
    assert np.allclose(np.asarray(heat[0].z, float), ex.attention["layer1"].attention[1, 0].numpy(), atol=1e-3)


def test_parts_before_after_figure_draws_both_plane_sets():
    images = torch.rand(2, 3, H, W)
    feature = torch.randn(2, 16, 24, 8)
    result = adjust_split_planes(feature, return_trace=True)
    fig = A.parts_before_after_figure(images, result.initial, result.planes, 24, labels=["a", "b"])
    dashed = [s for s in fig.layout.shapes if s.line.dash == "dash"]
    assert len(fig.layout.shapes) == 2 * 2 * 4 and len(dashed) == 8
    ys = sorted(float(s.y0) + 0.5 for s in dashed if s.xref == "x")
    assert ys == sorted(float(v) for v in np.asarray(initial_planes(24)) * H / 24)


def test_table3_reported_and_choose_pair():
    reported = A.table3_reported()
    assert reported["m+f"] == (92.8, 81.0) and reported["pcb"] == (90.4, 74.6) and len(reported) == 5
    a, b, c = A.choose_pair([5, 7, 5, 9, 7], [1, 2, 3, 1, 2], seed=0)
    assert (a, b) == (0, 2) and c in (1, 3, 4)
    with pytest.raises(ValueError, match="two cameras"):
        A.choose_pair([5, 5], [1, 1])
    table = pd.DataFrame({"same": [True, False, False], "distance": [0.1, 0.3, 0.5]})
    fig = A.pair_distance_figure({"trained": table})
    assert [list(t.y) for t in fig.data] == [[0.1], [0.3, 0.5]]


def test_involution_panel_redraws_on_pixel_and_stage(mbgn):
    images = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(3))
    panel = A.InvolutionPanel({"a": mbgn}, images, stage="layer1", groups=2)
    before = np.asarray(panel.figure.data[2].z, float)
    panel.col.value = 1
    after = np.asarray(panel.figure.data[2].z, float)
    assert not np.allclose(before, after)
    expected = A.involution_kernels(mbgn, images, "layer1", (panel.row.value, 1), 0)[0]
    np.testing.assert_allclose(after, expected, rtol=1e-3, atol=1e-6)
    panel.stage.value = "layer3"  # 8x4 map: the row slider shrinks with it
    assert panel.row.max == 7 and panel.row.value <= 7
    assert "layer3" in panel.figure.layout.title.text


def test_small_test_split_keeps_first_ids(synthetic_split):
    small = A.small_test_split(synthetic_split, 3)
    ids = sorted({r.pid for r in synthetic_split.query})[:3]
    assert {r.pid for r in small.query} == set(ids)
    assert {r.pid for r in small.gallery if r.pid >= 0} <= set(ids)
    assert len(small.query) == sum(r.pid in ids for r in synthetic_split.query)
    assert small.train is synthetic_split.train
    with pytest.raises(ValueError, match="at least 1"):
        A.small_test_split(synthetic_split, 0)
