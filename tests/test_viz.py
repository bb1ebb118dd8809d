"""reidlab.viz: every figure builder returns a plotly Figure with the traces, shapes and frames
its inputs call for (and bad input fails with the argument's name). Small inputs, no model."""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

go = pytest.importorskip("plotly.graph_objects", reason="plotly is not installed (pip install -e '.[notebooks]')")
from reidlab import viz  # noqa: E402
from reidlab.data.records import ImageRecord  # noqa: E402

H, W = 32, 16


@pytest.fixture()
def records(tmp_path):
    """Four images on disk: two with keypoints, one with an occluder mask (left half)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for k in range(4):
        path = tmp_path / f"{k:04d}_c{k}s1_000001_01.png"
        Image.fromarray(rng.integers(100, 140, (H, W, 3), dtype=np.uint8)).save(path)
        keypoints = None
        if k < 2:
            keypoints = np.zeros((17, 3), np.float32)
            keypoints[:, 0] = np.linspace(2, W - 2, 17)
            keypoints[:, 1] = np.linspace(2, H - 2, 17)
            keypoints[:, 2] = 1
            keypoints[16] = (-1, -1, 0)  # right ankle missing: its limb (14, 16) is not drawn
        extra = {}
        if k == 2:
            mask = np.zeros((H, W), np.uint8)
            mask[:, : W // 2] = 255
            mask_path = tmp_path / "mask.png"
            Image.fromarray(mask).save(mask_path)
            extra = {"mask_path": str(mask_path), "occluder": "pole"}
        out.append(ImageRecord(str(path), pid=k + 1, camid=k, keypoints=keypoints, extra=extra))
    return out


def test_import_reidlab_does_not_import_plotly():
    code = "import sys, reidlab, reidlab.data, reidlab.models, reidlab.engine; " \
           "print('plotly' in sys.modules or 'ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_to_display_image_undoes_normalisation():
    rgb = np.array([200, 100, 50], np.float32)
    mean, std = np.array(viz.figures.IMAGENET_MEAN), np.array(viz.figures.IMAGENET_STD)
    normalised = torch.tensor((rgb / 255 - mean) / std, dtype=torch.float32)[:, None, None].expand(3, 4, 2)
    shown = viz.to_display_image(normalised)
    assert shown.shape == (4, 2, 3) and shown.dtype == np.uint8
    assert np.abs(shown.astype(int) - rgb.astype(int)).max() <= 1
    as_uint8 = torch.full((3, 4, 2), 7, dtype=torch.uint8)
    assert (viz.to_display_image(as_uint8) == 7).all()
    with pytest.raises(ValueError, match="image"):
        viz.to_display_image(torch.zeros(2, 3, 4, 2))


def test_sample_grid_traces_and_keypoints(records):
    fig = viz.sample_grid(records, n=4, show_keypoints=True)
    assert isinstance(fig, go.Figure)
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images) == 4 and len(fig.data) == 4 + 2 * 2  # two records have keypoints
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0] == "id 1 / cam 0" and "occl." in titles[2]
    skeleton = fig.data[1]
    segments = sum(1 for x in skeleton.x if x is None)
    assert segments == len(viz.COCO17_SKELETON) - 1  # the limb to the missing ankle is left out
    assert len(fig.data[2].x) == 16  # visible points only
    assert len(viz.sample_grid(records, n=3, show_keypoints=False).data) == 3


def test_sample_grid_tints_masks(records):
    plain = viz.decode_data_uri(viz.sample_grid(records[2:3], show_masks=False).data[0].source).astype(int)
    tinted = viz.decode_data_uri(viz.sample_grid(records[2:3], show_masks=True).data[0].source).astype(int)
    left, right = slice(None, W // 2 - 1), slice(W // 2 + 1, None)  # away from the edge (JPEG blur)
    assert (tinted[:, left, 1] < plain[:, left, 1] - 30).all()  # green drops towards magenta where masked
    assert np.abs(tinted[:, right] - plain[:, right]).max() <= 8  # untouched elsewhere (JPEG noise only)


def test_aabs_planes_figure_frames_and_rows():
    trace = torch.tensor([[[2, 4, 6, 9], [1, 3, 5, 7]],
                          [[3, 4, 6, 9], [1, 3, 5, 7]],
                          [[3, 5, 6, 10], [1, 3, 5, 7]]])  # (T + 1 = 3, B = 2, n = 4); image 1 never moves
    images = torch.zeros(2, 3, 64, 32)
    images[1] = 1.0  # image 1 is a different picture
    fig = viz.aabs_planes_figure(images, trace, feature_height=16, index=0)
    assert len(fig.frames) == 3 and len(fig.layout.sliders[0].steps) == 3
    assert len(fig.data) == 2 and len(fig.layout.shapes) == 8
    scale = 64 / 16
    initial = sorted(s.y0 for s in fig.layout.shapes if s.line.dash == "dash")
    final = sorted(s.y0 for s in fig.layout.shapes if s.line.dash == "solid")
    assert initial == pytest.approx([r * scale - 0.5 for r in (2, 4, 6, 9)])
    assert final == pytest.approx([r * scale - 0.5 for r in (3, 5, 6, 10)])
    middle = [y for y in fig.frames[1].data[1].y if y is not None][::2]
    assert middle == pytest.approx([r * scale - 0.5 for r in (3, 4, 6, 9)])
    assert "2 repetitions" in fig.layout.title.text
    other = viz.aabs_planes_figure(images, trace, feature_height=16, index=1)
    assert sorted(s.y0 for s in other.layout.shapes if s.line.dash == "solid") == pytest.approx(
        [r * scale - 0.5 for r in (1, 3, 5, 7)])
    # the title and the frames are image 1's own: it never moved
    assert "image 1: 0 repetitions" in other.layout.title.text and len(other.frames) == 1
    # image 1 of the batch is drawn, not image 0
    shown = viz.decode_data_uri(other.data[0].source)
    assert shown.mean() > viz.decode_data_uri(fig.data[0].source).mean() + 50


def test_aabs_frames_keep_the_image_and_controls_do_not_overlap():
    trace = torch.tensor([[[2, 4, 6, 9]], [[3, 4, 6, 9]], [[3, 5, 6, 10]]])
    fig = viz.aabs_planes_figure(torch.rand(3, 64, 32), trace, feature_height=16)
    for frame in fig.frames:  # plotly.js drops an image trace that a frame leaves out
        assert isinstance(frame.data[0], go.Image) and frame.data[0].source == fig.data[0].source
        assert list(frame.traces) == [0, 1]
    assert all(step.args[1]["frame"]["redraw"] for step in fig.layout.sliders[0].steps)
    assert fig.layout.updatemenus[0].buttons[0].args[1]["frame"]["redraw"] is True
    button, slider = fig.layout.updatemenus[0], fig.layout.sliders[0]
    assert button.x + 0.2 <= slider.x  # the play button sits left of the slider, not on its grip
    assert fig.to_plotly_json()["data"][0].get("uid") is None


def test_aabs_image_steps_keeps_the_images_own_repetitions():
    trace = torch.tensor([[[2, 4]], [[3, 4]], [[3, 4]]])[:, [0, 0]]  # (3, 2, 2); both images alike
    trace[2, 1] = torch.tensor([3, 5])  # image 1 moves once more
    assert viz.aabs_image_steps(trace, 0).tolist() == [[2, 4], [3, 4]]
    assert viz.aabs_image_steps(trace, 1).tolist() == [[2, 4], [3, 4], [3, 5]]
    with pytest.raises(IndexError, match="trace"):
        viz.aabs_image_steps(trace, 2)


def test_aabs_similarities_reproduce_algorithm_1():
    from reidlab.models.aabs import adjust_split_planes

    g = torch.Generator().manual_seed(3)
    feature = torch.rand(4, 6, 16, 3, generator=g)
    feature[:, :3, 7:] += 2.0  # structure to move towards, so planes move over several repetitions
    feature[:, 3:, 11:] += 1.5
    result = adjust_split_planes(feature, return_trace=True)
    assert result.iterations >= 1
    for b in range(4):
        steps = viz.aabs_image_steps(result, b)
        sims = viz.aabs_similarities(feature, result, b)
        assert sims.shape == (len(steps), 4, 4) and np.abs(sims).max() <= 1 + 1e-6
        moves = viz.aabs_moves(sims, steps, feature_height=16)
        np.testing.assert_array_equal(moves[:-1], np.diff(steps, axis=0))  # lines 21-26 give the trace
        assert not moves[-1].any()  # the last check moved nothing: the loop ended
        np.testing.assert_array_equal(steps[-1], result.planes[b].numpy())
    # the cosine of row l_0 - 1 with the part above, recomputed by hand for image 0 at the start
    rows = feature[0].mean(dim=2).T  # (16, C)
    l0 = int(result.initial[0, 0])
    expected = torch.nn.functional.cosine_similarity(rows[l0 - 1], rows[:l0].mean(0), dim=0)
    assert viz.aabs_similarities(feature, result, 0)[0, 0, 0] == pytest.approx(float(expected), abs=1e-5)
    fig = viz.aabs_repetition_figure(feature[:, :3], result, 16, index=0, repetition=0,
                                     similarities=viz.aabs_similarities(feature, result, 0))
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 4 and len(bars[0].x) == 4
    assert bars[0].y[0] == pytest.approx(float(expected), abs=1e-3)


def test_round_sig():
    values = np.array([123456.0, 0.000123456, -0.987654, 0.0, np.nan, 1.23449])
    rounded = viz.round_sig(values, 4)
    np.testing.assert_allclose(rounded[[0, 1, 2, 3, 5]], [123500.0, 0.0001235, -0.9877, 0.0, 1.234], rtol=1e-12)
    assert np.isnan(rounded[4])
    # noise in the last bits disappears
    assert (viz.round_sig(0.1234567 + 1e-12) == viz.round_sig(0.1234567 - 1e-12)).all()


def _gsrpa_details(B=2, h=4, w=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    N = h * w
    return SimpleNamespace(attention=torch.rand(B, 1, h, w, generator=g), relation=torch.randn(B, N, N, generator=g))


def test_gsrpa_figure_panels_and_pixel_row():
    details = _gsrpa_details()
    images = torch.zeros(2, 3, 32, 16)
    images[1] = 1.0
    fig = viz.gsrpa_figure(images, details, index=1, pixel=(2, 1))
    assert len(fig.data) == 10
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 4
    np.testing.assert_allclose(heatmaps[0].z, details.attention[1, 0].numpy(), rtol=1e-3)
    np.testing.assert_allclose(heatmaps[2].z, details.relation[1, 2 * 2 + 1].view(4, 2).numpy(), rtol=1e-3)  # row
    np.testing.assert_allclose(heatmaps[3].z, details.relation[1, :, 2 * 2 + 1].view(4, 2).numpy(), rtol=1e-3)  # column
    assert heatmaps[0].text[2][1] == "attention, cell (2, 1)"  # hover names the map cell, as the titles do
    assert "%{text}" in heatmaps[0].hovertemplate and "%{x}" not in heatmaps[0].hovertemplate
    layout = fig.layout
    assert layout.xaxis2.title.text == "pixel j" and layout.yaxis2.title.text.startswith("pixel i")
    assert layout.xaxis2.showticklabels and layout.width is None  # axes on the matrix; width follows the page
    assert viz.decode_data_uri(fig.data[0].source).mean() > 150  # image 1 drawn (image 0 would be ~116)
    default = viz.gsrpa_figure(images[0], details)  # default pixel: the most attended cell
    r, c = np.unravel_index(details.attention[0, 0].argmax().item(), (4, 2))
    assert f"({r}, {c})" in default.layout.annotations[2].text and (r, c) == viz.gsrpa_pixel(details)
    with pytest.raises(ValueError, match="pixel"):
        viz.gsrpa_figure(images[0], details, pixel=(4, 0))


def test_figure_data_is_rounded():
    details = _gsrpa_details()
    fig = viz.gsrpa_figure(torch.zeros(3, 32, 16), details)
    for trace in fig.data:
        if isinstance(trace, go.Heatmap):
            z = np.asarray(trace.z, np.float64)
            np.testing.assert_array_equal(z, viz.round_sig(z).astype(np.float32))
    noisy = SimpleNamespace(attention=details.attention * (1 + 1e-7), relation=details.relation * (1 + 1e-7))
    assert viz.gsrpa_figure(torch.zeros(3, 32, 16), noisy).to_json() == fig.to_json()


def test_block_average_matches_plain_loop():
    matrix = np.arange(100, dtype=float).reshape(10, 10)
    small = viz.block_average(matrix, 4)  # factor 3 -> 4 x 4 blocks, last ones 1 wide
    assert small.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert small[i, j] == pytest.approx(matrix[3 * i:3 * i + 3, 3 * j:3 * j + 3].mean())
    assert viz.block_average(matrix, 10) is matrix
    fig = viz.gsrpa_figure(torch.zeros(3, 32, 16), _gsrpa_details(h=8, w=4), max_matrix=8)
    assert np.asarray(fig.data[3].z).shape == (8, 8)


def test_structure_similarity_figure():
    sim = torch.eye(10).expand(3, 10, 10)
    fig = viz.structure_similarity_figure(sim, index=2)
    assert len(fig.data) == 1 and list(fig.data[0].x[:3]) == ["B1-L", "B1-R", "B2-L"]
    assert fig.data[0].zmin == -1 and fig.data[0].zmax == 1
    with pytest.raises(ValueError, match="square"):
        viz.structure_similarity_figure(torch.zeros(10, 9))


def test_compare_with_paper_and_metrics_bar():
    results = pd.DataFrame({"rank1": [50.0, 60.0], "mAP": [30.0, 40.0]}, index=["Baseline", "MBGN"])
    reported = pd.DataFrame({"preset": ["a", "b", "c"], "row": ["Baseline", "MBGN", "Other"],
                             "market1501/rank1": [92.2, 96.5, np.nan], "market1501/mAP": [82.0, 92.3, np.nan]})
    table = viz.compare_with_paper(results, reported)
    assert len(table) == 4 + 4  # the row without figures is dropped
    paper = table[(table.source == "paper") & (table.run == "MBGN") & (table.metric == "mAP")]
    assert paper.value.item() == pytest.approx(92.3)
    fig = viz.metrics_bar(results, reported)
    assert len(fig.data) == 4 and all(isinstance(t, go.Bar) for t in fig.data)
    assert len(viz.metrics_bar(reported=reported, metrics=("rank1",)).data) == 1
    with pytest.raises(KeyError, match="mINP"):
        viz.compare_with_paper(results, metrics=("mINP",))
    with pytest.raises(ValueError):
        viz.compare_with_paper()


def test_cmc_curve():
    cmc = np.linspace(0.2, 1.0, 50)
    fig = viz.cmc_curve({"a": {"cmc": cmc}, "b": {"cmc": cmc ** 2}}, max_rank=20)
    assert len(fig.data) == 2 and len(fig.data[0].x) == 20
    assert fig.data[1].y[0] == pytest.approx(100 * 0.04)
    assert len(viz.cmc_curve({"cmc": cmc}).data) == 1
    with pytest.raises(KeyError, match="cmc"):
        viz.cmc_curve({"a": {"rank1": 1.0}})


def test_attribute_graph_figure_layouts():
    adjacency = torch.rand(2, 5, 5)
    names = [f"attr{k}" for k in range(5)]
    assert len(viz.attribute_graph_figure(adjacency, names).data) == 1
    circle = viz.attribute_graph_figure(adjacency, names, layout="circle", top_edges=3)
    assert len(circle.data) == 2
    assert sum(1 for x in circle.data[0].x if x is None) == 3  # three links drawn
    with pytest.raises(ValueError, match="names"):
        viz.attribute_graph_figure(adjacency, names[:4])
    with pytest.raises(ValueError, match="layout"):
        viz.attribute_graph_figure(adjacency, names, layout="spring")


def test_pose_pyramid_figure_levels():
    positions = {"j1": torch.rand(2, 17, 2) * 30, "j2": torch.rand(2, 10, 2) * 30, "j3": torch.rand(2, 5, 2) * 30}
    positions["j1"][0, 3] = -1  # absent
    attention = {level: torch.softmax(torch.randn(2, p.shape[1], p.shape[1]), -1) for level, p in positions.items()}
    fig = viz.pose_pyramid_figure(torch.zeros(3, 32, 16), positions, attention)
    assert len(fig.data) == 1 + 3 + 3
    j1 = [t for t in fig.data if isinstance(t, go.Scatter) and t.name == "j1"][0]
    assert len(j1.x) == 16
    presence = {"j1": torch.ones(2, 17, dtype=torch.bool)}
    only_j1 = viz.pose_pyramid_figure(torch.zeros(3, 32, 16), {"j1": positions["j1"]}, attention, presence, index=1)
    assert len(only_j1.data) == 3


def test_pose_pyramid_figure_notes_static_attention():
    positions = {"j1": torch.rand(1, 17, 2) * 30, "j3": torch.rand(1, 5, 2) * 30}
    static = torch.softmax(torch.randn(1, 1, 17), -1).expand(1, 17, 17)  # every row the same
    varied = torch.softmax(torch.randn(1, 5, 5), -1)
    fig = viz.pose_pyramid_figure(torch.zeros(1, 3, 32, 16), positions, {"j1": static, "j3": varied})
    assert fig.layout.width is None and fig.layout.autosize  # responsive, no fixed 1050 px
    notes = [a.text for a in fig.layout.annotations if "static" in a.text]
    assert len(notes) == 1 and "j1" in notes[0] and "j3" not in notes[0]
    assert "rows identical" in fig.layout.annotations[1].text and "rows identical" not in fig.layout.annotations[2].text
    assert viz.rows_identical(static[0]) and not viz.rows_identical(varied[0])
    present = torch.ones(17, dtype=torch.bool)
    present[4] = False
    noisy = static[0].clone()
    noisy[4] = 0  # an absent node's row is zero and does not count
    assert viz.rows_identical(noisy, present) and not viz.rows_identical(noisy)
    quiet = viz.pose_pyramid_figure(torch.zeros(3, 32, 16), {"j3": positions["j3"]}, {"j3": varied})
    assert not [a for a in quiet.layout.annotations if "static" in a.text]


def test_cross_dependency_figure_links_top_nodes():
    dependency = torch.softmax(torch.randn(2, 4, 3), -1)
    names_from, names_to = list("abcd"), list("xyz")
    fig = viz.cross_dependency_figure(dependency, names_from, names_to, index=1, top_k=2)
    links = [t for t in fig.data if t.mode == "lines"]
    assert len(links) == 4 * 2
    best = int(dependency[1, 0].argmax())
    assert any(t.hovertemplate.startswith(f"a -> {names_to[best]}") for t in links)
    present = torch.tensor([[True, False, True, True]] * 2)
    assert len([t for t in viz.cross_dependency_figure(dependency, names_from, names_to, presence_from=present,
                                                       top_k=1).data if t.mode == "lines"]) == 3
    with pytest.raises(ValueError, match="names"):
        viz.cross_dependency_figure(dependency, names_from[:3], names_to)


def test_attribute_mask_figure():
    masks = torch.rand(2, 3, 8, 4)
    fig = viz.attribute_mask_figure(torch.zeros(2, 3, 32, 16), masks, ["hat", "bag", "age"], attribute="bag", index=1,
                                    probabilities=[torch.tensor([[0.2, 0.8], [0.9, 0.1]])] * 3,
                                    truth=torch.tensor([[0, 1, 0], [1, 0, 1]]))
    np.testing.assert_allclose(fig.data[1].z, masks[1, 1].numpy(), rtol=1e-3)
    assert fig.layout.title.text == "bag: predicted 0 (p = 0.90), true 0"
    with pytest.raises(ValueError, match="attribute"):
        viz.attribute_mask_figure(torch.zeros(3, 32, 16), masks, ["hat", "bag", "age"], attribute=5)


def test_tour_notebook_is_stored_small_and_parameterised():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "00_tour.ipynb"
    if not path.exists():
        pytest.skip(f"{path} not found")
    assert path.stat().st_size < 1_000_000, "store the tour under 1 MB (see notebooks/README.md)"
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", [])
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs), "stored without figures"
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    assert "plotly.js" not in html.lower() and len(html) < 50_000  # no embedded plotly.js bundle
