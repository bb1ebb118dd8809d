"""Plotly figure builders over the package's own outputs (records, explanations, result dicts).

Every builder takes what another part of reidlab produced (``ImageRecord`` lists,
``AABSResult`` traces, ``GSRPADetails``, ``MSRAExplanation`` fields, ranking result dicts,
the ``presets_table`` DataFrame) and returns a ``plotly.graph_objects.Figure``; nothing
here feeds back into training. Figures stay small so that notebooks that store them stay
small: images travel as PNG data URIs at native resolution (a 128x64 thumbnail is a few
kB, not a 25k-number JSON array), big matrices are block-averaged down to
``max_matrix`` rows, and each panel uses as few traces as it can.

Coordinates: images are drawn in their own pixels (x right, y down); a feature map
of ``h x w`` cells over an ``H x W`` image puts cell ``(r, c)`` at
``((c + 0.5) * W / w, (r + 0.5) * H / h)``, and AABS plane ``l`` (the first row below the
plane, see :mod:`reidlab.models.aabs`) at image row ``l * H / h``.
"""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

try:  # plotly belongs to the optional "notebooks" extra; ``import reidlab`` never needs it
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "reidlab.viz needs plotly: pip install -e '.[notebooks]' (or pip install plotly)"
    ) from error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# COCO-17 limbs as index pairs (the order of reidlab.data.records.COCO17_NAMES).
COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4),  # face
    (5, 6), (5, 11), (6, 12), (11, 12),  # torso
    (5, 7), (7, 9), (6, 8), (8, 10),  # arms
    (11, 13), (13, 15), (12, 14), (14, 16),  # legs
)
MASK_TINT = (255, 0, 200)  # occluder pixels are blended towards magenta
LEVEL_COLOURS = {"j1": "#e45756", "j2": "#4c78a8", "j3": "#54a24b"}


# ----------------------------------------------------------------------------- helpers
def _numpy(value, name: str) -> np.ndarray:
    """A tensor / array / list as a float or int numpy array (detached, on CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        value = (value.float() if value.is_floating_point() else value).numpy()
    try:
        return np.asarray(value)
    except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
        raise TypeError(f"{name}: expected an array or tensor, got {type(value).__name__}") from error


def to_display_image(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Any one image -> ``(H, W, 3)`` uint8 for display.

    Accepts a path, a PIL image, an ``(H, W, 3)`` array (uint8, or float in 0..1), or a
    ``(3, H, W)`` tensor/array as the data pipeline produces it (float, normalised with
    ``mean``/``std``, which are undone; uint8 is taken as is).
    """
    if isinstance(image, (str, Path)):
        from reidlab.data.images import read_image

        image = read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    is_float_tensor = hasattr(image, "detach") and image.is_floating_point()
    array = _numpy(image, "image")
    if array.ndim != 3:
        raise ValueError(f"image: expected one image (3, H, W) or (H, W, 3), got shape {array.shape}")
    if array.shape[0] == 3 and array.shape[-1] != 3:  # (3, H, W): the pipeline's layout
        array = array.transpose(1, 2, 0)  # (H, W, 3)
        if is_float_tensor or array.dtype.kind == "f":
            array = array * np.asarray(std, np.float32) + np.asarray(mean, np.float32)  # undo Normalize
            array = array * 255.0
    elif array.shape[-1] != 3:
        raise ValueError(f"image: expected 3 colour channels, got shape {array.shape}")
    elif array.dtype.kind == "f" and array.max(initial=0.0) <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def image_data_uri(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> str:
    """``(H, W, 3)`` uint8 -> ``data:image/<fmt>;base64,...`` (what a ``go.Image`` ``source`` takes).

    JPEG (default) keeps a 128x64 thumbnail at 3-5 kB, a quarter of a PNG's size; ``fmt="png"`` is lossless."""
    from PIL import Image

    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"image_data_uri: fmt must be 'jpeg' or 'png', got {fmt!r}")
    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if fmt == "jpeg":
        picture.save(buffer, format="JPEG", quality=quality)
    else:
        picture.save(buffer, format="PNG", optimize=True)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_data_uri(uri: str) -> np.ndarray:
    """The inverse of :func:`image_data_uri` (for tests and checks): ``(H, W, 3)`` uint8."""
    from PIL import Image

    if not uri.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")):
        raise ValueError("decode_data_uri: not a PNG/JPEG data URI")
    payload = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))


def tint_mask(image: np.ndarray, mask: np.ndarray, colour=MASK_TINT, alpha: float = 0.55) -> np.ndarray:
    """Blend ``colour`` into ``image (H, W, 3)`` where ``mask (H, W)`` is set (resized if needed)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != image.shape[:2]:
        from PIL import Image

        mask = np.asarray(Image.fromarray((mask > 0).astype(np.uint8) * 255).resize(
            (image.shape[1], image.shape[0]), Image.NEAREST))
    out = image.astype(np.float32)
    hit = mask > 0
    out[hit] = (1 - alpha) * out[hit] + alpha * np.asarray(colour, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _image_trace(image: np.ndarray, name: str = "image") -> go.Image:
    return go.Image(source=image_data_uri(image), name=name, hoverinfo="skip")


def _heatmap_over_image(values: np.ndarray, image_shape, name: str, colorscale="Jet", opacity=0.5,
                        zmin=None, zmax=None, showscale=True, colorbar_x=None) -> go.Heatmap:
    """An ``(h, w)`` map stretched over an ``(H, W)`` image: cell centres at the image pixels they cover."""
    h, w = values.shape
    H, W = image_shape[:2]
    return go.Heatmap(
        z=values.astype(np.float32), x0=0.5 * W / w - 0.5, dx=W / w, y0=0.5 * H / h - 0.5, dy=H / h,
        colorscale=colorscale, opacity=opacity, zmin=zmin, zmax=zmax, name=name, showscale=showscale,
        colorbar=dict(x=colorbar_x, len=0.8, thickness=10) if colorbar_x is not None else dict(thickness=10),
    )


def _pick(array: np.ndarray, index: int, ndim: int, name: str) -> np.ndarray:
    """``array`` itself when it has ``ndim`` dims, else its batch element ``index``."""
    if array.ndim == ndim + 1:
        if not 0 <= index < array.shape[0]:
            raise IndexError(f"{name}: index {index} out of range for a batch of {array.shape[0]}")
        return array[index]
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dims (or {ndim + 1} with a batch), got shape {array.shape}")
    return array


def block_average(matrix: np.ndarray, max_size: int) -> np.ndarray:
    """Average ``matrix (R, C)`` over square blocks so that no side exceeds ``max_size`` (sides that divide
    unevenly keep a smaller last block). Keeps big relation matrices (N = 512 -> 262k values) small."""
    R, C = matrix.shape
    factor = max(1, math.ceil(max(R, C) / max_size))
    if factor == 1:
        return matrix
    rows, cols = math.ceil(R / factor), math.ceil(C / factor)
    padded = np.full((rows * factor, cols * factor), np.nan)
    padded[:R, :C] = matrix
    return np.nanmean(padded.reshape(rows, factor, cols, factor), axis=(1, 3))  # (rows, cols)


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False)


# ----------------------------------------------------------------------------- data
def records_batch(records, height: int, width: int, attribute_spec=None) -> dict:
    """The test-time batch (the batch contract of :mod:`reidlab.data.dataset`) for a few records:
    resized to ``height x width``, normalised, keypoints in pixels of the resized image."""
    import torch

    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.transforms import build_transforms

    records = list(records)
    if not records:
        raise ValueError("records_batch: no records given")
    dataset = ReIDDataset(records, transform=build_transforms(height, width, train=False), attribute_spec=attribute_spec)
    return torch.utils.data.default_collate([dataset[i] for i in range(len(records))])


def image_feature_map(images, feature_height: int, feature_width: int | None = None):
    """Images ``(B, 3, H, W)`` average-pooled to a ``(B, 3, feature_height, feature_width)`` "feature map"
    whose channels are the colours: AABS (Algorithm 1) run on it moves the split planes to colour
    boundaries (collar, belt, hem), which shows the mechanics without a trained network."""
    import torch.nn.functional as F

    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"image_feature_map: images must be (B, 3, H, W), got {tuple(images.shape)}")
    feature_width = feature_width or max(1, round(images.shape[-1] * feature_height / images.shape[-2]))
    return F.adaptive_avg_pool2d(images.float(), (feature_height, feature_width))  # (B, 3, h, w)


def record_image(record, show_masks: bool = False) -> np.ndarray:
    """A record's image as ``(H, W, 3)`` uint8, with its occluder mask tinted in when asked and present
    (``record.extra["mask_path"]``, as the synthetic dataset writes it)."""
    image = to_display_image(record.path)
    mask_path = record.extra.get("mask_path") if record.extra else None
    if show_masks and mask_path:
        from PIL import Image

        image = tint_mask(image, np.asarray(Image.open(mask_path).convert("L")))
    return image


def _keypoint_traces(keypoints: np.ndarray, name: str) -> list[go.Scatter]:
    """Skeleton lines (one trace, segments separated by None) and visible points (one trace)."""
    visible = keypoints[:, 2] > 0
    xs, ys = [], []
    for a, b in COCO17_SKELETON:
        if visible[a] and visible[b]:
            xs += [float(keypoints[a, 0]), float(keypoints[b, 0]), None]
            ys += [float(keypoints[a, 1]), float(keypoints[b, 1]), None]
    from reidlab.data.records import COCO17_NAMES

    points = np.flatnonzero(visible)
    return [
        go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#00e5ff", width=1.5), hoverinfo="skip",
                   name=f"{name} skeleton", showlegend=False),
        go.Scatter(x=np.round(keypoints[points, 0], 1), y=np.round(keypoints[points, 1], 1), mode="markers",
                   marker=dict(size=4, color="#ffea00", line=dict(width=0.5, color="black")),
                   text=[COCO17_NAMES[i] for i in points], hoverinfo="text", name=f"{name} keypoints",
                   showlegend=False),
    ]


def sample_grid(records, n: int = 8, show_keypoints: bool = True, show_masks: bool = False, columns: int = 8,
                thumb_height: int = 220) -> go.Figure:
    """The first ``n`` records as thumbnails titled ``id <pid> / cam <camid>``.

    ``show_keypoints``: COCO-17 skeleton lines + visible points (2 traces per image that has
    keypoints); ``show_masks``: occluder masks tinted magenta into the image (no extra trace).
    Traces per image: 1 (the image) + 2 if keypoints are drawn.
    """
    records = list(records)[:n]
    if not records:
        raise ValueError("sample_grid: no records given")
    columns = max(1, min(columns, len(records)))
    rows = math.ceil(len(records) / columns)
    titles = [f"id {r.pid} / cam {r.camid}" + (" (occl.)" if r.extra.get("mask_path") else "") for r in records]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.01, vertical_spacing=0.06)
    for k, record in enumerate(records):
        row, col = divmod(k, columns)
        fig.add_trace(_image_trace(record_image(record, show_masks), name=Path(record.path).name), row + 1, col + 1)
        if show_keypoints and record.keypoints is not None:
            for trace in _keypoint_traces(np.asarray(record.keypoints, np.float32), Path(record.path).name):
                fig.add_trace(trace, row + 1, col + 1)
    _hide_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=thumb_height * rows + 40, width=max(300, 95 * columns), margin=dict(l=5, r=5, t=35, b=5),
                      showlegend=False)
    return fig


# ----------------------------------------------------------------------------- MBGN
def plane_rows(planes, feature_height: int, image_height: int) -> np.ndarray:
    """AABS planes (feature rows, the first row below each plane) -> image rows ``l * H / h``."""
    if feature_height <= 0:
        raise ValueError(f"feature_height must be positive, got {feature_height}")
    return _numpy(planes, "planes").astype(np.float64) * image_height / feature_height


def aabs_planes_figure(image, trace, feature_height: int, index: int = 0, part_names: Sequence[str] | None = None,
                       frame_duration: int = 600) -> go.Figure:
    """AABS split planes over ``image``: initial planes dashed, final planes solid, and an animation
    (one plotly frame per entry of the trace, a slider and a play button) of the planes moving.

    ``trace``: the ``(T + 1, B, n)`` tensor of ``AABSResult.trace`` (``(T + 1, n)`` for one image,
    or the ``AABSResult`` itself); ``feature_height``: rows of the map AABS split (the local
    branch's H); ``index``: which image of the batch. Traces: the image + the moving planes
    (2); shapes: 2n (n initial, n final); frames: T + 1.
    """
    if hasattr(trace, "planes") and hasattr(trace, "iterations"):  # an AABSResult (a tensor has .trace() too)
        if trace.trace is None:
            raise ValueError("aabs_planes_figure: the AABSResult has no trace; use adjust_split_planes(..., return_trace=True)")
        trace = trace.trace
    steps = _numpy(trace, "trace")
    steps = _pick(steps.transpose(1, 0, 2) if steps.ndim == 3 else steps, index, 2, "trace")  # (T + 1, n)
    if steps.ndim != 2 or steps.shape[0] < 1:
        raise ValueError(f"aabs_planes_figure: trace must be (T + 1, B, n) or (T + 1, n), got {steps.shape}")
    picture = to_display_image(image)
    H, W = picture.shape[:2]
    rows = plane_rows(steps, feature_height, H)  # (T + 1, n)
    n = rows.shape[1]
    part_names = list(part_names) if part_names is not None else [f"B{i + 1}" for i in range(n + 1)]

    def planes_trace(step_rows: np.ndarray, step: int) -> go.Scatter:
        xs, ys = [], []
        for y in step_rows:
            xs += [-0.5, W - 0.5, None]
            ys += [float(y) - 0.5, float(y) - 0.5, None]
        return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#ffea00", width=3),
                          name=f"planes, repetition {step}", hoverinfo="name")

    fig = go.Figure([_image_trace(picture), planes_trace(rows[0], 0)])
    for i in range(n):
        for y, dash, colour in ((rows[0, i], "dash", "white"), (rows[-1, i], "solid", "#ff1744")):
            fig.add_shape(type="line", x0=-0.5, x1=W - 0.5, y0=y - 0.5, y1=y - 0.5,
                          line=dict(color=colour, width=1.5, dash=dash))
    bounds = np.concatenate([[0.0], rows[-1], [float(H)]])
    for k, name in enumerate(part_names[: n + 1]):
        fig.add_annotation(x=W - 1, y=(bounds[k] + bounds[k + 1]) / 2 - 0.5, text=name, showarrow=False,
                           xanchor="left", font=dict(size=10, color="#ff1744"))
    fig.frames = [go.Frame(data=[planes_trace(rows[t], t)], traces=[1], name=str(t)) for t in range(len(rows))]
    slider_steps = [
        dict(method="animate", label=str(t),
             args=[[str(t)], dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))])
        for t in range(len(rows))
    ]
    fig.update_layout(
        title=dict(text=f"AABS: {len(rows) - 1} repetition(s); dashed = initial, red = final", font_size=12),
        width=330, height=max(420, int(H * 2.2) + 200), margin=dict(l=10, r=40, t=40, b=110), showlegend=False,
        sliders=[dict(active=0, steps=slider_steps, currentvalue=dict(prefix="repetition "), pad=dict(t=30))],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=0, xanchor="left", yanchor="top", pad=dict(t=60),
                          buttons=[dict(label="play", method="animate",
                                        args=[None, dict(frame=dict(duration=frame_duration, redraw=False),
                                                         fromcurrent=True, transition=dict(duration=0))])])],
    )
    _hide_axes(fig)
    fig.update_xaxes(range=[-0.5, W + 8])
    return fig


def gsrpa_figure(image, details, index: int = 0, pixel: tuple[int, int] | None = None, max_matrix: int = 64,
                 title: str = "") -> go.Figure:
    """GSRPA (MBGN Eq. 2, 7) for one image of the batch, three panels:

    1. the attention map ``sigmoid(Eq. 7)`` (``details.attention (B, 1, h, w)``) over the image;
    2. the relation matrix ``details.relation (B, N, N)`` (block-averaged to at most ``max_matrix`` a side);
    3. the relation row of ``pixel`` = (row, col) on the ``h x w`` grid (default: the most
       attended cell), i.e. how that pixel relates to every other one, over the image.

    Traces: image, attention, relation, image, relation row, selected-pixel marker (6).
    """
    attention = _pick(_numpy(details.attention, "details.attention"), index, 3, "details.attention")[0]  # (h, w)
    relation = _pick(_numpy(details.relation, "details.relation"), index, 2, "details.relation")  # (N, N)
    h, w = attention.shape
    if relation.shape != (h * w, h * w):
        raise ValueError(f"gsrpa_figure: relation {relation.shape} does not match an attention map of {h}x{w}")
    if pixel is None:
        pixel = tuple(int(v) for v in np.unravel_index(int(np.argmax(attention)), attention.shape))
    r, c = pixel
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"gsrpa_figure: pixel {pixel} outside the {h}x{w} grid")
    picture = to_display_image(image)
    H, W = picture.shape[:2]
    row_map = relation[r * w + c].reshape(h, w)  # (h, w)
    small = block_average(relation, max_matrix)
    fig = make_subplots(rows=1, cols=3, column_widths=[0.25, 0.5, 0.25], horizontal_spacing=0.08, subplot_titles=(
        f"attention ({h}x{w})", f"relation N x N (N = {h * w}{', block-averaged' if small.shape != relation.shape else ''})",
        f"relation row of pixel ({r}, {c})"))
    fig.add_trace(_image_trace(picture), 1, 1)
    fig.add_trace(_heatmap_over_image(attention, (H, W), "attention", zmin=0, zmax=1, colorbar_x=0.2), 1, 1)
    fig.add_trace(go.Heatmap(z=small.astype(np.float32), colorscale="Viridis", name="relation",
                             colorbar=dict(x=0.71, len=0.8, thickness=10)), 1, 2)
    fig.add_trace(_image_trace(picture), 1, 3)
    fig.add_trace(_heatmap_over_image(row_map, (H, W), "relation row", colorscale="Viridis", opacity=0.6,
                                      colorbar_x=1.0), 1, 3)
    fig.add_trace(go.Scatter(x=[(c + 0.5) * W / w - 0.5], y=[(r + 0.5) * H / h - 0.5], mode="markers",
                             marker=dict(symbol="x", size=10, color="white", line=dict(width=1, color="black")),
                             name="selected pixel"), 1, 3)
    fig.update_yaxes(autorange="reversed", scaleanchor="x2", row=1, col=2)
    _hide_axes(fig)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=dict(text=title, font_size=13), height=380, width=900,
                      margin=dict(l=10, r=10, t=50 if title else 35, b=10), showlegend=False)
    return fig


def structure_labels(num_parts: int = 5) -> list[str]:
    """Row/column labels of MBGN's structure similarity: ``B1-L, B1-R, B2-L, ...`` (left half first)."""
    return [f"B{p + 1}-{side}" for p in range(num_parts) for side in ("L", "R")]


def structure_similarity_figure(matrix, index: int = 0, labels: Sequence[str] | None = None,
                                title: str = "structure similarity (cosine of half-width part vectors)") -> go.Figure:
    """MBGN's 10 x 10 structure similarity (``MBGNExplanation.structure_similarity``, ``(B, 10, 10)``
    or one ``(10, 10)``) as a heatmap in [-1, 1]; one trace."""
    values = _pick(_numpy(matrix, "matrix"), index, 2, "matrix")
    if values.shape[0] != values.shape[1]:
        raise ValueError(f"structure_similarity_figure: matrix must be square, got {values.shape}")
    labels = list(labels) if labels is not None else structure_labels(values.shape[0] // 2) if values.shape[0] % 2 == 0 \
        else [str(i) for i in range(values.shape[0])]
    fig = go.Figure(go.Heatmap(z=values.astype(np.float32), x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
                               reversescale=True, colorbar=dict(thickness=10)))
    fig.update_yaxes(autorange="reversed", scaleanchor="x")
    fig.update_layout(title=dict(text=title, font_size=12), width=430, height=400, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# ----------------------------------------------------------------------------- results
def compare_with_paper(results: pd.DataFrame | None = None, reported: pd.DataFrame | None = None,
                       dataset: str = "market1501", metrics: Sequence[str] = ("rank1", "mAP")) -> pd.DataFrame:
    """One long table ``run, metric, source, value`` (in %) of our results and the paper's figures.

    ``results``: one row per run (index = run name, e.g. ``results_frame`` output, in %), with a
    column per metric. ``reported``: ``presets_table()`` (or a slice): its ``row`` (falling back to
    ``preset``) names the run and ``<dataset>/<metric>`` holds the paper's value; rows without a
    value are dropped.
    """
    if results is None and reported is None:
        raise ValueError("compare_with_paper: give results, reported, or both")
    rows = []
    if results is not None:
        missing = [m for m in metrics if m not in results.columns]
        if missing:
            raise KeyError(f"compare_with_paper: results has no column(s) {missing}; columns: {list(results.columns)}")
        for run, record in results.iterrows():
            rows += [{"run": str(run), "metric": m, "source": "ours", "value": float(record[m])} for m in metrics]
    if reported is not None:
        names = reported["row"] if "row" in reported.columns else reported.get("preset", reported.index.to_series())
        for name, (_, record) in zip(names, reported.iterrows()):
            for m in metrics:
                value = record.get(f"{dataset}/{m}", np.nan)
                if pd.notna(value):
                    rows.append({"run": str(name), "metric": m, "source": "paper", "value": float(value)})
    return pd.DataFrame(rows, columns=["run", "metric", "source", "value"])


def metrics_bar(results: pd.DataFrame | None = None, reported: pd.DataFrame | None = None,
                dataset: str = "market1501", metrics: Sequence[str] = ("rank1", "mAP"), title: str = "") -> go.Figure:
    """Grouped bars of :func:`compare_with_paper`: one trace per (metric, source); paper bars hatched."""
    table = compare_with_paper(results, reported, dataset, metrics)
    fig = go.Figure()
    colours = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2"]
    for k, metric in enumerate(metrics):
        for source in ("ours", "paper"):
            part = table[(table.metric == metric) & (table.source == source)]
            if part.empty:
                continue
            fig.add_trace(go.Bar(
                x=part.run, y=part.value.round(2), name=f"{metric} ({source})", marker_color=colours[k % len(colours)],
                marker_pattern_shape="/" if source == "paper" else "", opacity=0.6 if source == "paper" else 1.0,
                text=part.value.round(1), textposition="outside"))
    fig.update_layout(barmode="group", title=dict(text=title or f"{dataset}: {', '.join(metrics)} (%)", font_size=13),
                      yaxis_title="%", height=420, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    return fig


def cmc_curve(results, max_rank: int = 20, title: str = "CMC") -> go.Figure:
    """CMC curves (rank k -> % of queries whose first match is within the top k); one trace per run.

    ``results``: ``{run name: result dict with "cmc"}`` or one such dict (as
    :func:`reidlab.engine.metrics.evaluate_ranking` returns, CMC as fractions)."""
    if isinstance(results, Mapping) and "cmc" in results:
        results = {"run": results}
    if not results:
        raise ValueError("cmc_curve: no results given")
    fig = go.Figure()
    for name, result in results.items():
        if "cmc" not in result:
            raise KeyError(f"cmc_curve: result {name!r} has no 'cmc'")
        cmc = _numpy(result["cmc"], "cmc").astype(np.float64)[:max_rank]
        fig.add_trace(go.Scatter(x=np.arange(1, len(cmc) + 1), y=np.round(100 * cmc, 3), mode="lines+markers",
                                 name=str(name), marker=dict(size=4)))
    fig.update_layout(title=dict(text=title, font_size=13), xaxis_title="rank", yaxis_title="matching rate (%)",
                      yaxis_range=[0, 101], height=360, width=520, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# ----------------------------------------------------------------------------- MSRA
def attribute_graph_figure(adjacency, names: Sequence[str], index: int = 0, layout: str = "heatmap",
                           top_edges: int = 30, title: str = "attribute relation graph (D^-1/2 S D^-1/2)") -> go.Figure:
    """MSRA's attribute graph (``MSRAExplanation.attribute_adjacency``, ``(B, K, K)`` or ``(K, K)``).

    ``layout="heatmap"``: the K x K matrix (1 trace). ``layout="circle"``: the attributes on a
    circle and the ``top_edges`` strongest off-diagonal links (symmetrised) as lines (2 traces:
    edges, nodes).
    """
    matrix = _pick(_numpy(adjacency, "adjacency"), index, 2, "adjacency")
    K = matrix.shape[0]
    names = list(names)
    if matrix.shape != (K, K) or len(names) != K:
        raise ValueError(f"attribute_graph_figure: adjacency {matrix.shape} needs {matrix.shape[0]} names, got {len(names)}")
    if layout == "heatmap":
        fig = go.Figure(go.Heatmap(z=matrix.astype(np.float32), x=names, y=names, colorscale="Viridis",
                                   colorbar=dict(thickness=10)))
        fig.update_yaxes(autorange="reversed", scaleanchor="x")
        fig.update_layout(width=620, height=600)
    elif layout == "circle":
        angle = 2 * np.pi * np.arange(K) / K
        px, py = np.cos(angle), np.sin(angle)
        weights = (matrix + matrix.T) / 2
        upper = np.triu_indices(K, k=1)
        order = np.argsort(weights[upper])[::-1][:top_edges]
        xs, ys = [], []
        for e in order:
            i, j = upper[0][e], upper[1][e]
            xs += [px[i], px[j], None]
            ys += [py[i], py[j], None]
        fig = go.Figure([
            go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="rgba(76,120,168,0.5)", width=1.5), hoverinfo="skip",
                       name=f"top {len(order)} links"),
            go.Scatter(x=np.round(px, 4), y=np.round(py, 4), mode="markers+text", text=names, textposition="top center",
                       marker=dict(size=9, color=np.round(np.diag(matrix), 4), colorscale="Viridis"), name="attributes",
                       textfont=dict(size=9)),
        ])
        _hide_axes(fig)
        fig.update_yaxes(scaleanchor="x")
        fig.update_layout(width=560, height=560, showlegend=False)
    else:
        raise ValueError(f"attribute_graph_figure: layout must be 'heatmap' or 'circle', got {layout!r}")
    fig.update_layout(title=dict(text=title, font_size=12), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def pose_pyramid_figure(image, node_positions: Mapping[str, object], attention: Mapping[str, object],
                        presence: Mapping[str, object] | None = None, node_names: Mapping[str, Sequence[str]] | None = None,
                        index: int = 0) -> go.Figure:
    """MSRA's pose pyramid for one image: the nodes of every level over the image (j1 keypoints,
    j2 parts, j3 regions) and each level's intra-layer attention S (Eq. 4) as a heatmap.

    ``node_positions``: level -> ``(B, n, 2)`` [x, y] in input pixels (-1 where absent);
    ``attention``: level -> ``(B, n, n)``; ``presence`` (optional): level -> ``(B, n)`` bool
    (default: position >= 0). Traces: the image + one node scatter per level + one heatmap per level.
    """
    levels = [level for level in node_positions if level in attention]
    if not levels:
        raise ValueError("pose_pyramid_figure: node_positions and attention share no level")
    picture = to_display_image(image)
    fig = make_subplots(rows=1, cols=1 + len(levels), column_widths=[0.22] + [0.78 / len(levels)] * len(levels),
                        horizontal_spacing=0.05,
                        subplot_titles=["nodes"] + [f"{level}: attention S (Eq. 4)" for level in levels])
    fig.add_trace(_image_trace(picture), 1, 1)
    symbols = {"j1": "circle", "j2": "diamond", "j3": "square"}
    for k, level in enumerate(levels):
        positions = _pick(_numpy(node_positions[level], f"node_positions[{level!r}]"), index, 2, "node_positions")
        scores = _pick(_numpy(attention[level], f"attention[{level!r}]"), index, 2, "attention")
        if presence is not None and level in presence:
            present = _pick(_numpy(presence[level], f"presence[{level!r}]"), index, 1, "presence").astype(bool)
        else:
            present = (positions >= 0).all(axis=1)
        names = list(node_names[level]) if node_names and level in node_names else [str(i) for i in range(len(positions))]
        fig.add_trace(go.Scatter(
            x=np.round(positions[present, 0], 1), y=np.round(positions[present, 1], 1), mode="markers", name=level,
            text=[names[i] for i in np.flatnonzero(present)], hoverinfo="text+name",
            marker=dict(size=6 + 3 * k, symbol=symbols.get(level, "circle"), color=LEVEL_COLOURS.get(level, "white"),
                        line=dict(width=1, color="black"))), 1, 1)
        fig.add_trace(go.Heatmap(z=scores.astype(np.float32), x=names, y=names, colorscale="Viridis", showscale=k == len(levels) - 1,
                                 colorbar=dict(thickness=10), name=f"{level} attention"), 1, 2 + k)
        fig.update_yaxes(autorange="reversed", row=1, col=2 + k)
        fig.update_xaxes(tickfont_size=7, row=1, col=2 + k)
        fig.update_yaxes(tickfont_size=7, row=1, col=2 + k)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_annotations(font_size=11)
    fig.update_layout(height=420, width=1050, margin=dict(l=10, r=10, t=35, b=10),
                      legend=dict(orientation="h", x=0, y=-0.05))
    return fig


__all__ = [
    "COCO17_SKELETON", "aabs_planes_figure", "attribute_graph_figure", "block_average", "cmc_curve",
    "compare_with_paper", "decode_data_uri", "gsrpa_figure", "image_data_uri", "image_feature_map", "metrics_bar",
    "plane_rows", "pose_pyramid_figure", "record_image", "records_batch", "sample_grid", "structure_labels", "structure_similarity_figure",
    "tint_mask", "to_display_image",
]
