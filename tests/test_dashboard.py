"""reidlab.viz.dashboard: the helpers behind notebooks 04-07 and the ablation dashboard (11).
Tiny random models (ResNet-18, pretrained=False, 128x64) on the session's small synthetic data;
the batch is two real one-step training runs recorded as the train notebook records them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("ipywidgets", reason="ipywidgets is not installed (pip install -e '.[notebooks]')")
go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed")
from reidlab import viz  # noqa: E402
from reidlab.models import build_model  # noqa: E402
from reidlab.viz import cam, widgets  # noqa: E402
from reidlab.viz import dashboard as D  # noqa: E402

H, W = 128, 64


@pytest.fixture(scope="module")
def msra_case(synthetic_split):
    torch.manual_seed(0)
    model = build_model("msra", num_classes=8, attribute_spec=synthetic_split.attribute_spec, depth=18,
                        pretrained=False, input_size=(H, W)).eval()
    batch = viz.records_batch(synthetic_split.query[:3], H, W, synthetic_split.attribute_spec)
    return model, batch, model.explain(batch["image"], batch["keypoints"])


# ----------------------------------------------------------------------------- attributes
def test_attribute_table_matches_the_explanation(msra_case):
    _, batch, explanation = msra_case
    table = D.attribute_table(explanation, batch["attributes"], index=1)
    assert list(table.index) == list(explanation.attribute_names)
    assert (table["predicted"].to_numpy() == explanation.attribute_predictions[1].numpy()).all()
    assert (table["true"].to_numpy() == batch["attributes"][1].numpy()).all()
    k = 3
    assert table["p"].iloc[k] == pytest.approx(float(explanation.attribute_probabilities[k][1].max()), abs=5e-4)
    known = table["true"] >= 0
    assert (table.loc[known, "correct"] == (table.loc[known, "predicted"] == table.loc[known, "true"])).all()
    with pytest.raises(ValueError, match="truth has 2 attributes"):
        D.attribute_table(explanation, batch["attributes"][:, :2], index=0)


def test_mean_adjacency_is_the_mean_over_batches(msra_case, synthetic_split):
    model, _, _ = msra_case
    records = synthetic_split.query[:5]
    mean = D.mean_attribute_adjacency(model, records, H, W, synthetic_split.attribute_spec, batch_size=2)
    full = viz.records_batch(records, H, W, synthetic_split.attribute_spec)
    expected = model.explain(full["image"], full["keypoints"]).attribute_adjacency.double().mean(0).numpy()
    K = len(synthetic_split.attribute_spec.names)
    assert mean.shape == (K, K)
    np.testing.assert_allclose(mean, expected, rtol=2e-3, atol=1e-6)
    with pytest.raises(ValueError, match="no records"):
        D.mean_attribute_adjacency(model, [], H, W)


def test_top_attribute_pairs_hand_made():
    adjacency = np.array([[1.0, 0.2, 0.9], [0.4, 1.0, 0.1], [0.1, 0.3, 1.0]])
    pairs = D.top_attribute_pairs(adjacency, ["a", "b", "c"], k=2)
    assert pairs[["a", "b"]].values.tolist() == [["a", "c"], ["a", "b"]]  # (0.9+0.1)/2 = 0.5 > 0.3 > 0.2
    assert pairs["weight"].tolist() == pytest.approx([0.5, 0.3])
    with pytest.raises(ValueError, match="square"):
        D.top_attribute_pairs(adjacency[:2], ["a", "b", "c"])


# ----------------------------------------------------------------------------- pose pyramid
def test_drop_keypoints_and_its_effect(msra_case):
    model, batch, _ = msra_case
    keypoints = batch["keypoints"]
    fewer = D.drop_keypoints(keypoints, ["left_wrist", 0])
    assert (fewer[:, [9, 0], 2] == 0).all() and (fewer[:, [9, 0], :2] == -1).all()
    assert torch.equal(fewer[:, 1:9], keypoints[:, 1:9]) and torch.equal(keypoints, batch["keypoints"])
    with pytest.raises(ValueError, match="unknown keypoint 'elbow'"):
        D.drop_keypoints(keypoints, ["elbow"])
    same = D.keypoint_removal_effect(model, batch["image"], keypoints, [])
    assert (same["feature cosine"] == 1.0).all() and (same["gate change"] == 0).all()
    legs = ["left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
    effect = D.keypoint_removal_effect(model, batch["image"], keypoints, legs)
    visible = (keypoints[..., 2] > 0).sum(1)
    visible_after = (D.drop_keypoints(keypoints, legs)[..., 2] > 0).sum(1)
    for i in range(len(keypoints)):
        before, after = map(int, effect.loc[i, "j1 nodes"].split(" -> "))
        assert (before, after) == (int(visible[i]), int(visible_after[i]))
    assert (effect["feature cosine"] < 1.0).any()  # six keypoints fewer change the feature


def test_gate_figure_percentages():
    gates = {"a": torch.tensor([[0.05, 0.06, 0.95, 0.5]]), "b": np.full((2, 3), 0.51)}
    fig = D.gate_figure(gates, bins=10)
    assert [t.name for t in fig.data] == ["a", "b"]
    assert sum(fig.data[0].y) == pytest.approx(100) and fig.data[0].y[0] == pytest.approx(50)
    assert fig.data[1].y[5] == pytest.approx(100)
    with pytest.raises(ValueError, match="no gates"):
        D.gate_figure({})


# ----------------------------------------------------------------------------- attention vs Grad-CAM
@pytest.fixture(scope="module")
def mbgn_pair():
    from reidlab.presets import get_preset

    models = []
    for row in ("Baseline", "Baseline+GSRPA"):
        torch.manual_seed(0)
        models.append(get_preset(f"mbgn/table2/{row}").build(num_classes=8, depth=18, pretrained=False,
                                                             input_size=(H, W)).eval())
    baseline, gsrpa = models
    return baseline, gsrpa


def test_saliency_maps_attention_or_grad_cam(mbgn_pair, synthetic_split):
    pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    baseline, gsrpa = mbgn_pair
    images = viz.records_batch(synthetic_split.query[:2], H, W)["image"]
    assert not D.has_attention(baseline) and D.has_attention(gsrpa)
    what, maps = D.saliency_maps(baseline, images)
    assert what == "grad-cam" and maps.shape == (2, H, W) and 0 <= maps.min() and maps.max() <= 1
    what, maps = D.saliency_maps(gsrpa, images)
    stage, expected = cam.attention_maps(gsrpa, images)
    assert what == f"attention {stage}"
    np.testing.assert_allclose(maps, expected.numpy())
    with pytest.raises(ValueError, match="source must be"):
        D.saliency_maps(gsrpa, images, source="cam")


def test_saliency_grid_figure_layout_and_outline():
    images = torch.zeros(2, 3, 8, 4)
    maps = {"m1": np.ones((2, 2, 2)), "m2": np.arange(8.0).reshape(2, 2, 2)}
    mask = np.zeros((8, 4), bool)
    mask[2:5, 1:3] = True
    fig = D.saliency_grid_figure(images, maps, masks=[mask, None])
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len([t for t in fig.data if isinstance(t, go.Image)]) == 6 and len(heat) == 4
    np.testing.assert_allclose(np.asarray(heat[1].z), [[0, 1 / 3], [2 / 3, 1]], atol=1e-3)  # scaled to its max
    outlines = [t for t in fig.data if isinstance(t, go.Scatter)]
    assert len(outlines) == 3  # on the 3 panels of row 0 only
    assert sorted(zip(outlines[0].x, outlines[0].y)) == [(1, 2), (1, 3), (1, 4), (2, 2), (2, 3), (2, 4)]
    with pytest.raises(ValueError, match="must be"):
        D.saliency_grid_figure(images, {"bad": np.ones((3, 2, 2))})
    fine = np.zeros((2, 8, 4))
    fine[:, :4] = 1.0  # the upper half
    small = [t for t in D.saliency_grid_figure(images, {"cam": fine}, max_cells=2).data if isinstance(t, go.Heatmap)]
    np.testing.assert_allclose(np.asarray(small[0].z), [[1.0], [0.0]])  # 8 x 4 -> 2 x 1 blocks of 4 x 4


def test_occluder_share_figure_in_percent():
    table = pd.DataFrame({"model": ["base", "gsrpa", "gsrpa"], "source": ["grad-cam", "attention", "grad-cam"],
                          "share": [0.2, 0.05, 0.1], "area": [0.1, 0.1, 0.1]})
    fig = D.occluder_share_figure(table)
    bars = {t.name.split(":")[0]: t for t in fig.data if isinstance(t, go.Bar)}
    assert list(bars["grad-cam"].x) == ["base", "gsrpa"] and list(bars["grad-cam"].y) == pytest.approx([20, 10])
    assert list(bars["attention"].y) == pytest.approx([5])
    area = [t for t in fig.data if isinstance(t, go.Scatter)][0]
    assert list(area.y) == pytest.approx([10, 10])
    with pytest.raises(KeyError, match="area"):
        D.occluder_share_figure(table.drop(columns="area"))


def test_test_subset(synthetic_split):
    small = D.test_subset(synthetic_split, 3)
    ids = sorted({r.pid for r in synthetic_split.query})[:3]
    assert {r.pid for r in small.query} == set(ids) == {r.pid for r in small.gallery}
    assert len(small.query) == sum(r.pid in ids for r in synthetic_split.query) and small.train is synthetic_split.train
    assert D.test_subset(synthetic_split, 0) is synthetic_split
    with pytest.raises(ValueError, match="num_ids"):
        D.test_subset(synthetic_split, -1)


# ----------------------------------------------------------------------------- ablation dashboard
@pytest.fixture(scope="module")
def tiny_batch(synthetic_root, synthetic_split, tmp_path_factory):
    """Two one-step runs (Baseline, Baseline+GSRPA) and one failed record, as the train notebook writes them."""
    from conftest import make_tiny_batch
    from reidlab.ablation import _atomic_write_json, failure_record, normalize_parameters

    folder = make_tiny_batch(tmp_path_factory.mktemp("batch"), synthetic_root, synthetic_split)
    broken = folder / "broken"
    broken.mkdir()
    _atomic_write_json(failure_record(normalize_parameters(dict(preset="mbgn/table2/MBGN", seed=1)), "boom"),
                       broken / "results.json")
    return folder


def test_load_batch_labels_logs_and_errors(tiny_batch, tmp_path):
    batch = D.load_batch(tiny_batch)
    assert len(batch.table) == 3 and batch.labels == ["Baseline s0", "Baseline+GSRPA s0"]
    assert set(batch.table["label"]) == {"Baseline s0", "Baseline+GSRPA s0", "MBGN s1"}
    assert set(batch.logs) == set(batch.labels) and "loss" in batch.logs["Baseline s0"].columns
    assert D.default_pair(batch) == ("Baseline s0", "Baseline+GSRPA s0")
    model, cfg = batch.model("Baseline+GSRPA s0")
    assert D.has_attention(model) and cfg.preset == "mbgn/table2/Baseline+GSRPA" and not model.training
    assert batch.model("Baseline+GSRPA s0")[0] is model  # cached
    with pytest.raises(ValueError, match="no run 'nope'"):
        batch.model("nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        batch.model("MBGN s1")
    with pytest.raises(FileNotFoundError, match="batch folder not found"):
        D.load_batch(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no runs"):
        D.load_batch(tmp_path)
    # the AblationPanel reads the batch as it is
    panel = widgets.AblationPanel(batch.ok, batch.logs)
    assert list(panel.figures[0].data[0].x) == ["mbgn/table2/Baseline", "mbgn/table2/Baseline+GSRPA"]


def test_run_compare_panel_controls_change_the_figures(tiny_batch):
    pytest.importorskip("pytorch_grad_cam", reason="grad-cam is not installed")
    batch = D.load_batch(tiny_batch)
    panel = D.RunComparePanel(batch, query=0)
    maps, list_a, list_b = panel.figures
    titles = [a.text for a in maps.layout.annotations]
    assert "A: Baseline s0<br>grad-cam" in titles
    assert any(t.startswith("B: Baseline+GSRPA s0<br>attention") for t in titles)
    a = panel.data("Baseline s0")
    expected = viz.rank_list(a.distances, 0, [r.pid for r in a.split.query], [r.camid for r in a.split.query],
                             [r.pid for r in a.split.gallery], [r.camid for r in a.split.gallery], k=10)
    assert [t.name for t in list_a.data[1:]] == [f"rank {r}" for r in expected["rank"]]
    assert "run A, Baseline s0" in list_a.layout.title.text and "run B, Baseline+GSRPA s0" in list_b.layout.title.text
    first_query = list_a.data[0].source
    panel.query.value = 3
    assert panel.figures[1].data[0].source != first_query  # another query image is drawn
    assert f"query 3: id {a.split.query[3].pid}" in panel.figures[0].layout.annotations[0].text
    panel.run_a.value = "Baseline+GSRPA s0"
    assert "run A, Baseline+GSRPA s0" in panel.figures[1].layout.title.text
    assert panel.view().children[1] is panel.live[0]
    with pytest.raises(ValueError, match="not a finished run"):
        D.RunComparePanel(batch, runs=("Baseline s0", "MBGN s1"))


def test_show_stores_one_short_line(msra_case):
    _, batch, explanation = msra_case
    panel = widgets.AttributeGraphPanel(batch["image"], explanation)
    view = D.show(panel)
    assert repr(view) == f"<AttributeGraphPanel: image=0, attribute={explanation.attribute_names[0]!r}, graph='circle'>"
    assert view._repr_mimebundle_()["text/plain"] == repr(view)
    assert view.children[1].children[0] is panel.live[0]  # the live figures are the panel's
    panel.image.value = 1
    assert panel.live[0].data[0].source == panel.figures[0].data[0].source


def test_mask_grid_figure_draws_every_mask(msra_case):
    _, batch, explanation = msra_case
    names = explanation.attribute_names
    fig = D.mask_grid_figure(batch["image"], explanation.attribute_masks, names, index=2, columns=9)
    heat = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heat) == len(names) and [t.name for t in heat] == list(names)
    np.testing.assert_allclose(np.asarray(heat[5].z), viz.round_sig(explanation.attribute_masks[2, 5].numpy()),
                               rtol=1e-3)
    assert [a.text for a in fig.layout.annotations][:len(names)] == list(names)
    with pytest.raises(ValueError, match="names"):
        D.mask_grid_figure(batch["image"], explanation.attribute_masks, names[:3])


def test_a_batch_of_records_only_says_it_has_no_checkpoints(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from reidlab.viz import dashboard

    shipped = Path(__file__).resolve().parents[1] / "notebooks" / "ablation-demo" / "mbgn-table2"
    copy = tmp_path / "batch"
    shutil.copytree(shipped, copy)
    batch = dashboard.load_batch(copy)
    assert len(batch.labels) >= 2 and not batch.has_checkpoints()
    label = batch.labels[0]
    (copy / str(batch.row(label)["run"]) / "checkpoint.pt").write_bytes(b"")
    assert batch.has_checkpoints([label]) and not batch.has_checkpoints()
    assert json.loads((copy / "batch.json").read_text())["runs"]


def test_run_labels_name_the_variant_an_entry_changes():
    row = {"preset": "mbgn/table2/Baseline+GSRPA", "seed": 2,
           "run": "mbgn-table2-Baseline+GSRPA_lr_mult=-attention.-10_seed2_6ede1801"}
    assert D.run_setting(row) == "Baseline+GSRPA lr_mult=-attention.-10"
    assert D.run_label(row) == "Baseline+GSRPA lr_mult=-attention.-10 s2"
    plain = dict(row, run="mbgn-table2-Baseline+GSRPA_seed2_ed2fc28e")
    assert D.run_label(plain) == "Baseline+GSRPA s2"  # a named set's run: no variant
    assert D.run_label({"preset": "", "model": "bnneck", "seed": 0, "run": "bnneck_depth=18_seed0_ab"}) == "bnneck depth=18 s0"
