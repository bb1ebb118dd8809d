"""reidlab.viz.widgets, headless: set a control's value, the panel's static figure changes as it should.
Tiny random models (ResNet-18, pretrained=False, 128x64); no browser."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (pip install -e '.[notebooks]')")
go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed")
from reidlab import viz  # noqa: E402
from reidlab.models import build_model  # noqa: E402
from reidlab.viz import widgets as W  # noqa: E402

H, Wd = 128, 64


@pytest.fixture(scope="module")
def mbgn_case():
    torch.manual_seed(0)
    model = build_model("mbgn", num_classes=8, depth=18, pretrained=False, input_size=(H, Wd))
    images = torch.randn(3, 3, H, Wd, generator=torch.Generator().manual_seed(0))
    images[:, :, 40:] += 2.0  # a horizontal boundary so that AABS has something to find
    return images, model.explain(images)


@pytest.fixture(scope="module")
def msra_case(synthetic_split):
    torch.manual_seed(0)
    model = build_model("msra", num_classes=8, attribute_spec=synthetic_split.attribute_spec, depth=18,
                        pretrained=False, input_size=(H, Wd))
    batch = viz.records_batch(synthetic_split.query[:2], H, Wd, synthetic_split.attribute_spec)
    return batch, model.explain(batch["image"], batch["keypoints"])


def _image_source(fig):
    return next(t.source for t in fig.data if isinstance(t, go.Image))


def test_aabs_panel_image_and_repetition(mbgn_case):
    images, explanation = mbgn_case
    panel = W.AABSPanel(images, explanation)
    first = panel.figure
    assert "image 0" in first.layout.title.text and panel.repetition.max == panel.repetitions(0)
    bars = [t for t in first.data if isinstance(t, go.Bar)]
    assert len(bars) == 4  # the four cosines of lines 19-20
    np.testing.assert_allclose(bars[0].y, viz.round_sig(viz.aabs_similarities(explanation.local_map,
                                                                                 explanation.aabs[0], 0)[0, :, 0]))
    panel.image.value = 2
    assert "image 2" in panel.figure.layout.title.text
    assert _image_source(panel.figure) != _image_source(first)  # another picture is drawn
    assert panel.repetition.max == panel.repetitions(2)
    steps = viz.aabs_image_steps(explanation.aabs[0], 2)
    panel.repetition.value = panel.repetition.max
    planes = [t for t in panel.figure.data if isinstance(t, go.Scatter)][0]
    expected = viz.plane_rows(steps[-1], explanation.local_map.shape[2], H) - 0.5
    np.testing.assert_allclose([y for y in planes.y if y is not None][::2], expected, atol=1e-3)
    animation = panel.animation()
    assert all(isinstance(f.data[0], go.Image) for f in animation.frames)
    assert panel.figure.to_plotly_json()["data"][0].get("uid") is None  # stable stored output


def test_aabs_panel_trace_only():
    trace = torch.tensor([[[2, 4, 6, 9], [1, 3, 5, 7]], [[3, 4, 6, 9], [1, 3, 5, 7]]])
    panel = W.AABSPanel(torch.zeros(2, 3, 64, 32), trace=trace, feature_height=16)
    assert panel.repetition.max == 1 and not [t for t in panel.figure.data if isinstance(t, go.Bar)]
    panel.repetition.value = 1
    panel.image.value = 1  # image 1 never moved: the repetition slider shrinks to 0
    assert panel.repetition.max == 0 and panel.repetition.value == 0
    with pytest.raises(ValueError, match="feature_height"):
        W.AABSPanel(torch.zeros(2, 3, 64, 32), trace=trace)


def test_gsrpa_panel_stage_pixel_and_click(mbgn_case):
    images, explanation = mbgn_case
    panel = W.GSRPAPanel(images, explanation)
    assert list(panel.stage.options) == ["layer1", "layer2", "layer3", "layer4_g", "layer4_l"]
    details = explanation.attention[panel.stage.value]
    h, w = panel.grid()
    panel.select_pixel(1, 2)
    row_map = [t for t in panel.figure.data if isinstance(t, go.Heatmap)][2]
    np.testing.assert_allclose(row_map.z, viz.round_sig(details.relation[0, 1 * w + 2].view(h, w).numpy()), rtol=1e-6)
    panel.col.value = 3
    assert "pixel (1, 3)" in panel.figure.layout.annotations[2].text
    panel.select_at(x=0.0, y=float(H - 1))  # a click on the bottom-left image pixel -> the bottom-left cell
    assert panel.pixel == (h - 1, 0)
    panel.select_relation_index(w + 1)  # a click on row w + 1 of the matrix
    assert panel.pixel == (1, 1)
    panel.row.value = h - 1
    panel.stage.value = "layer4_l"  # a smaller grid: the sliders follow and the figure is that stage's
    h4, w4 = panel.grid()
    assert (h4, w4) == tuple(explanation.attention["layer4_l"].attention.shape[-2:]) and panel.row.max == h4 - 1
    assert panel.row.value == h4 - 1 and f"N = {h4 * w4}" in panel.figure.layout.annotations[1].text
    before = panel.figure.data[1].z
    panel.image.value = 1
    assert not np.array_equal(panel.figure.data[1].z, before)
    view = panel.view()  # live FigureWidgets mirror the static figure
    assert len(panel.live) == 1 and len(panel.live[0].data) == len(panel.figure.data)
    panel.col.value = 0
    assert panel.live[0].layout.annotations[2].text == panel.figure.layout.annotations[2].text
    assert view.children[1].children[0] is panel.live[0]


def test_gsrpa_panel_rejects_cbam():
    attention = {"layer4": SimpleNamespace(attention=torch.rand(1, 1, 4, 2))}
    with pytest.raises(ValueError, match="CBAM"):
        W.GSRPAPanel(torch.zeros(1, 3, 32, 16), attention)


def test_attribute_graph_panel(msra_case):
    batch, explanation = msra_case
    panel = W.AttributeGraphPanel(batch["image"], explanation, truth=batch.get("attributes"))
    mask, graph = panel.figures
    names = list(explanation.attribute_names)
    panel.attribute.value = names[3]
    assert panel.figure.layout.title.text.startswith(names[3])
    np.testing.assert_allclose(panel.figure.data[1].z, viz.round_sig(explanation.attribute_masks[0, 3].numpy()),
                               rtol=1e-6)
    assert len(panel.figures[1].data) == 2  # circle layout: edges + nodes
    panel.layout.value = "heatmap"
    assert len(panel.figures[1].data) == 1 and isinstance(panel.figures[1].data[0], go.Heatmap)


def test_pose_pyramid_panel_levels(msra_case):
    batch, explanation = msra_case
    panel = W.PosePyramidPanel(batch["image"], explanation)
    assert panel.level.value == "j1" and panel.dependency_key() == "j1->j2"
    pyramid, graph = panel.figures
    heat = [t for t in pyramid.data if isinstance(t, go.Heatmap)][0]
    assert len(heat.x) == 17
    assert graph.layout.title.text.startswith("j1->j2")
    panel.level.value = "j3"
    heat = [t for t in panel.figure.data if isinstance(t, go.Heatmap)][0]
    assert len(heat.x) == 5 and panel.dependency_key() == "j2->j3"
    panel.image.value = 1
    assert "j3" in [t.name for t in panel.figure.data if isinstance(t, go.Scatter)]


def test_retrieval_panel_borders():
    rng = np.random.default_rng(0)
    gallery = [np.full((16, 8, 3), 128, np.uint8) for _ in range(12)]
    g_pids, g_cams = np.arange(12) % 4, np.arange(12) % 3
    q_pids, q_cams = np.array([0, 1]), np.array([0, 1])
    distances = rng.random((2, 12))
    distances[0, 0] = -1  # same id, same camera: junk, left out
    distances[0, 4] = -0.5  # same id (4 % 4 = 0), camera 1: the true match, rank 1
    panel = W.RetrievalPanel([gallery[0], gallery[1]], gallery, distances, q_pids, q_cams, g_pids, g_cams, k=5)
    ranking = panel.ranking()
    assert ranking.gallery_index.iloc[0] == 4 and ranking.match.iloc[0] and 0 not in ranking.gallery_index.values
    first = viz.decode_data_uri(panel.figure.data[1].source).astype(int)
    assert first[0, 4, 1] > first[0, 4, 0] + 60  # green border on the match
    panel.query.value = 1
    assert panel.figure.layout.annotations[0].text.startswith("query 1")
    assert len(panel.figure.data) == 1 + 5


def test_ablation_panel_metric_grouping_runs():
    results = pd.DataFrame({
        "preset": ["Baseline", "Baseline", "MBGN", "MBGN"], "seed": [0, 1, 0, 1],
        "rank1": [10.0, 14.0, 20.0, 30.0], "mAP": [5.0, 7.0, 9.0, 11.0],
        "paper_rank1": [92.2, 92.2, 96.5, 96.5], "paper_mAP": [82.0, 82.0, 92.3, 92.3]})
    logs = {f"{p}-s{s}": pd.DataFrame({"epoch": [1, 2, 3], "loss": [3.0 - s, 2.0, 1.0 + s], "lr": [1e-3] * 3})
            for p, s in zip(results.preset, results.seed)}
    panel = W.AblationPanel(results, logs)
    assert panel.metric.value == "rank1" and "seed" not in panel.metric.options
    bars, curves = panel.figures
    assert list(bars.data[0].y) == [12.0, 25.0] and list(bars.data[1].y) == [92.2, 96.5]
    np.testing.assert_allclose(bars.data[0].error_y.array, [np.std([10, 14], ddof=1), np.std([20, 30], ddof=1)],
                               rtol=1e-3)
    panel.metric.value = "mAP"
    assert list(panel.figure.data[0].y) == [6.0, 10.0] and list(panel.figure.data[1].y) == [82.0, 92.3]
    panel.group.value = "seed"
    assert list(panel.figure.data[0].y) == [7.0, 9.0]
    assert len(curves.data) == 2
    panel.runs.value = ("MBGN-s1",)
    assert [t.name for t in panel.figures[1].data] == ["MBGN-s1"] and list(panel.figures[1].data[0].y) == [2.0, 2.0, 2.0]
    panel.curve.value = "lr"
    assert list(panel.figures[1].data[0].y) == [1e-3] * 3
    with pytest.raises(KeyError, match="nope"):
        viz.ablation_summary(results, "nope")


def test_model_panel_and_pickers():
    made = []
    panel = W.ModelPanel({"a": lambda: made.append("a") or go.Figure(go.Bar(y=[1])),
                          "b": lambda: made.append("b") or go.Figure(go.Bar(y=[2]))})
    assert list(panel.figure.data[0].y) == [1]
    panel.model.value = "b"
    assert list(panel.figure.data[0].y) == [2] and made == ["a", "b"]
    with pytest.raises(ValueError, match="image"):
        W.image_picker(0)
    with pytest.raises(ValueError, match="stage"):
        W.choice_picker([], "stage")


def test_tsne_and_cmc_static_figures():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(3), 6)
    features = rng.normal(size=(18, 8)) + 6 * np.eye(8)[pids]
    fig = viz.tsne_figure(features, pids, seed=0, perplexity=5, max_iter=250)
    assert len(fig.data) == 3 and sum(len(t.x) for t in fig.data) == 18
    again = viz.tsne_figure(features, pids, seed=0, perplexity=5, max_iter=250)
    assert again.to_json() == fig.to_json()  # seeded and rounded: the same stored output
    with pytest.raises(ValueError, match="ids"):
        viz.tsne_figure(points=np.zeros((4, 2)), pids=[0, 1])
