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
SIGNIFICANT_DIGITS = 4


def round_sig(values, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits, as float64 (0, NaN and inf kept).

    Stored notebooks are compared exactly (strict nbval): figure data rounded at the source keeps
    the float noise of the last bits (another BLAS, thread count or CPU) out of the stored outputs."""
    array = np.asarray(values, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(array)))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    scale = 10.0 ** (digits - 1 - magnitude)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.round(array * scale) / scale
    return np.where(np.isfinite(array), rounded, array)


def _z(values) -> np.ndarray:
    """Heatmap values: rounded (:func:`round_sig`), then float32 (half the stored size, same digits)."""
    return round_sig(values).astype(np.float32)


def select_image(images, index: int = 0):
    """Image ``index`` of a batch ``(B, 3, H, W)`` or of a list of images; one image is returned as is."""
    if isinstance(images, (list, tuple)):
        if not 0 <= index < len(images):
            raise IndexError(f"image index {index} out of range for {len(images)} images")
        return images[index]
    ndim = images.dim() if hasattr(images, "dim") else getattr(images, "ndim", None)
    if ndim == 4:
        if not 0 <= index < images.shape[0]:
            raise IndexError(f"image index {index} out of range for a batch of {images.shape[0]}")
        return images[index]
    return images


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
    """An ``(h, w)`` map stretched over an ``(H, W)`` image: cell centres at the image pixels they cover.
    Hover names the map cell ``(row, col)`` (the grid a title names), not the image pixel."""
    h, w = values.shape
    H, W = image_shape[:2]
    cells = [[f"{name}, cell ({r}, {c})" for c in range(w)] for r in range(h)]
    return go.Heatmap(
        z=_z(values), x0=0.5 * W / w - 0.5, dx=W / w, y0=0.5 * H / h - 0.5, dy=H / h, text=cells,
        hovertemplate="%{text}: %{z:.4g}<extra></extra>",
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


def aabs_image_steps(trace, index: int = 0) -> np.ndarray:
    """Image ``index``'s split planes after each of *its own* repetitions, ``(T_b + 1, n)`` int.

    ``trace``: ``AABSResult`` (with a trace), its ``(T + 1, B, n)`` trace, or one image's
    ``(T + 1, n)``. The batch trace gains an entry whenever *any* image moved a plane; an image
    whose planes stopped moving keeps them for good (Algorithm 1 is a function of its own planes),
    so its repetitions are the entries up to its last change, and ``T_b`` is its repetition count.
    """
    if hasattr(trace, "planes") and hasattr(trace, "iterations"):  # an AABSResult (a tensor has .trace() too)
        if trace.trace is None:
            raise ValueError("the AABSResult has no trace; use adjust_split_planes(..., return_trace=True)")
        trace = trace.trace
    steps = _numpy(trace, "trace")
    if steps.ndim not in (2, 3) or steps.shape[0] < 1:
        raise ValueError(f"trace must be (T + 1, B, n) or (T + 1, n), got {steps.shape}")
    steps = _pick(steps.transpose(1, 0, 2) if steps.ndim == 3 else steps, index, 2, "trace")  # (T + 1, n)
    changed = [t for t in range(1, len(steps)) if (steps[t] != steps[t - 1]).any()]
    return steps[: (changed[-1] if changed else 0) + 1].astype(np.int64)


def aabs_similarities(feature, trace, index: int = 0) -> np.ndarray:
    """The cosines of Algorithm 1 lines 19-20 that decided every plane's move, for image ``index``.

    ``feature``: the ``(B, C, h, w)`` map AABS split (``MBGNExplanation.local_map``);
    ``trace``: as :func:`aabs_image_steps`. Returns ``(T_b + 1, n, 4)``: entry ``[t, i]`` holds
    ``S(f'_i0, f_i), S(f'_i0, f_i+1), S(f'_i1, f_i), S(f'_i1, f_i+1)`` (row above / row below the
    plane against the part above / below it) as computed in repetition ``t + 1`` from the planes
    after repetition ``t``; the last entry is the check that found no move and ended the loop.
    Re-computed here from the trace exactly as :func:`reidlab.models.aabs.adjust_split_planes` does
    (row means, prefix sums, float32; plane ``i`` sees plane ``i - 1`` already moved in the same
    repetition), so :func:`aabs_moves` of the result reproduces the trace.
    """
    import torch
    import torch.nn.functional as F

    fmap = feature.detach() if hasattr(feature, "detach") else torch.as_tensor(np.asarray(feature))
    if fmap.dim() != 4:
        raise ValueError(f"aabs_similarities: feature must be (B, C, h, w), got {tuple(fmap.shape)}")
    if not 0 <= index < fmap.shape[0]:
        raise IndexError(f"aabs_similarities: index {index} out of range for a batch of {fmap.shape[0]}")
    steps = aabs_image_steps(trace, index)  # (T_b + 1, n)
    h = fmap.shape[2]
    if steps.max(initial=0) >= h:
        raise ValueError(f"aabs_similarities: planes {steps[-1].tolist()} do not fit a map of {h} rows")
    rows = fmap[index: index + 1].float().cpu().mean(dim=3).transpose(1, 2)  # (1, h, C)  GAP of each row
    prefix = F.pad(rows.cumsum(dim=1), (0, 0, 1, 0))[0]  # (h + 1, C)  as in adjust_split_planes

    def part_mean(start: int, end: int):
        return (prefix[end] - prefix[start]) / max(end - start, 1)  # (C,)

    n = steps.shape[1]
    out = np.zeros((len(steps), n, 4), np.float64)
    for t in range(len(steps)):
        moved = steps[min(t + 1, len(steps) - 1)]  # planes i' < i already moved in this repetition
        for i in range(n):
            top = int(moved[i - 1]) if i > 0 else 0
            bottom = int(steps[t, i + 1]) if i < n - 1 else h
            plane = int(steps[t, i])
            f_above, f_below = part_mean(top, plane), part_mean(plane, bottom)  # f_i, f_i+1 (line 15)
            row_above, row_below = rows[0, plane - 1], rows[0, plane]  # f'_i0, f'_i1 (lines 16-17)
            pairs = ((row_above, f_above), (row_above, f_below), (row_below, f_above), (row_below, f_below))
            out[t, i] = [float(F.cosine_similarity(a[None], b[None], dim=1)) for a, b in pairs]
    return out


def aabs_moves(similarities, steps, feature_height: int) -> np.ndarray:
    """Algorithm 1 lines 21-26 applied to :func:`aabs_similarities`: ``(T_b + 1, n)`` of -1 (plane
    up), +1 (down), 0 (stays; also when the move would empty a part). ``steps`` as
    :func:`aabs_image_steps`; ``moves[t]`` equals ``steps[t + 1] - steps[t]``."""
    sims = np.asarray(similarities, np.float64)
    steps = np.asarray(steps)
    moves = np.zeros(steps.shape, np.int64)
    n = steps.shape[1]
    for t in range(len(steps)):
        moved = steps[min(t + 1, len(steps) - 1)]
        for i in range(n):
            top = moved[i - 1] if i > 0 else 0
            bottom = steps[t, i + 1] if i < n - 1 else feature_height
            plane = steps[t, i]
            s0a, s0b, s1a, s1b = sims[t, i]
            if s0a < s0b and s1a < s1b and plane - 1 > top:
                moves[t, i] = -1
            elif s0a > s0b and s1a > s1b and plane + 1 < bottom:
                moves[t, i] = 1
    return moves


def _aabs_base(fig: go.Figure, picture: np.ndarray, rows: np.ndarray, part_names, subplot: dict) -> None:
    """Initial planes dashed white, final planes red, part names beside the final parts."""
    H, W = picture.shape[:2]
    n = rows.shape[1]
    for i in range(n):
        for y, dash, colour in ((rows[0, i], "dash", "white"), (rows[-1, i], "solid", "#ff1744")):
            fig.add_shape(type="line", x0=-0.5, x1=W - 0.5, y0=float(y) - 0.5, y1=float(y) - 0.5,
                          line=dict(color=colour, width=1.5, dash=dash), **subplot)
    bounds = np.concatenate([[0.0], rows[-1], [float(H)]])
    for k, name in enumerate(part_names[: n + 1]):
        fig.add_annotation(x=W - 1, y=float(bounds[k] + bounds[k + 1]) / 2 - 0.5, text=name, showarrow=False,
                           xanchor="left", font=dict(size=10, color="#ff1744"), **subplot)


def _planes_trace(step_rows: np.ndarray, step: int, W: int) -> go.Scatter:
    xs, ys = [], []
    for y in step_rows:
        xs += [-0.5, W - 0.5, None]
        ys += [round(float(y) - 0.5, 3), round(float(y) - 0.5, 3), None]
    return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#ffea00", width=3),
                      name=f"planes, repetition {step}", hoverinfo="name")


def aabs_planes_figure(image, trace, feature_height: int, index: int = 0, part_names: Sequence[str] | None = None,
                       frame_duration: int = 600) -> go.Figure:
    """AABS split planes over image ``index``: initial planes dashed, final planes solid, and an
    animation (one plotly frame per repetition of *this* image, a slider and a play button) of the
    planes moving (MBGN Algorithm 1).

    ``image``: the batch ``(B, 3, H, W)`` (or a list of images; image ``index`` is drawn) or the
    one image to draw; ``trace``: ``AABSResult`` or its ``(T + 1, B, n)`` trace (``(T + 1, n)``
    for one image); ``feature_height``: rows of the map AABS split (Branch l's h).
    Traces: the image + the moving planes (2); shapes: 2n; frames: T_b + 1, each holding both
    traces (plotly.js drops an image that a frame leaves out), played with ``redraw=True``.
    """
    steps = aabs_image_steps(trace, index)  # (T_b + 1, n)
    picture = to_display_image(select_image(image, index))
    H, W = picture.shape[:2]
    rows = plane_rows(steps, feature_height, H)  # (T_b + 1, n)
    n = rows.shape[1]
    part_names = list(part_names) if part_names is not None else [f"B{i + 1}" for i in range(n + 1)]
    image_trace = _image_trace(picture)
    fig = go.Figure([image_trace, _planes_trace(rows[0], 0, W)])
    _aabs_base(fig, picture, rows, part_names, {})
    fig.frames = [go.Frame(data=[image_trace, _planes_trace(rows[t], t, W)], traces=[0, 1], name=str(t))
                  for t in range(len(rows))]
    animate = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    slider_steps = [dict(method="animate", label=str(t), args=[[str(t)], animate]) for t in range(len(rows))]
    repetitions = len(rows) - 1
    fig.update_layout(
        title=dict(text=f"AABS, image {index}: {repetitions} repetition{'s' if repetitions != 1 else ''}<br>"
                        "dashed = initial, red = final", font_size=12),
        width=330, height=max(420, int(H * 2.2) + 200), margin=dict(l=10, r=40, t=50, b=90), showlegend=False,
        # the button sits left of the slider (x < 0.3), never over its grip at step 0
        sliders=[dict(active=0, steps=slider_steps, x=0.3, len=0.7, y=0, yanchor="top", pad=dict(t=10, b=0),
                      currentvalue=dict(prefix="repetition ", font_size=11))],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=0, xanchor="left", yanchor="top", pad=dict(t=40),
                          buttons=[dict(label="play", method="animate",
                                        args=[None, dict(frame=dict(duration=frame_duration, redraw=True),
                                                         fromcurrent=True, transition=dict(duration=0))])])],
    )
    _hide_axes(fig)
    fig.update_xaxes(range=[-0.5, W + 8])
    return fig


SIMILARITY_NAMES = ("S(f'0, f_i): row above vs part above", "S(f'0, f_i+1): row above vs part below",
                    "S(f'1, f_i): row below vs part above", "S(f'1, f_i+1): row below vs part below")


def aabs_repetition_figure(image, trace, feature_height: int, index: int = 0, repetition: int = 0,
                           similarities=None, part_names: Sequence[str] | None = None) -> go.Figure:
    """One repetition of AABS on image ``index`` (what the widget's sliders show): the planes after
    ``repetition`` (yellow) over the image with the initial (dashed) and final (red) planes, and,
    given ``similarities`` (:func:`aabs_similarities`, ``(T_b + 1, n, 4)``), the four cosines of
    Algorithm 1 lines 19-20 per plane as grouped bars with the decision they give (up / down / stay).
    Traces: image, planes (+ 4 bars with similarities). ``repetition`` is clipped to the image's own."""
    steps = aabs_image_steps(trace, index)
    repetition = int(min(max(repetition, 0), len(steps) - 1))
    picture = to_display_image(select_image(image, index))
    H, W = picture.shape[:2]
    rows = plane_rows(steps, feature_height, H)
    n = rows.shape[1]
    part_names = list(part_names) if part_names is not None else [f"B{i + 1}" for i in range(n + 1)]
    title = f"AABS, image {index}: repetition {repetition} of {len(steps) - 1}"
    if similarities is None:
        fig = go.Figure([_image_trace(picture), _planes_trace(rows[repetition], repetition, W)])
        _aabs_base(fig, picture, rows, part_names, {})
        _hide_axes(fig)
        fig.update_layout(title=dict(text=title, font_size=12), width=330, height=max(380, int(H * 2.2) + 120),
                          margin=dict(l=10, r=40, t=40, b=10), showlegend=False)
        return fig
    sims = np.asarray(similarities, np.float64)
    if sims.shape != (len(steps), n, 4):
        raise ValueError(f"aabs_repetition_figure: similarities {sims.shape} do not match {len(steps)} steps x {n} planes x 4")
    moves = aabs_moves(sims, steps, feature_height)[repetition]
    words = {-1: "up", 0: "stays", 1: "down"}
    fig = make_subplots(rows=1, cols=2, column_widths=[0.3, 0.7], horizontal_spacing=0.12, subplot_titles=(
        f"planes after repetition {repetition}", f"Algorithm 1 lines 19-20, repetition {repetition + 1}"))
    fig.add_trace(_image_trace(picture), 1, 1)
    fig.add_trace(_planes_trace(rows[repetition], repetition, W), 1, 1)
    _aabs_base(fig, picture, rows, part_names, dict(row=1, col=1))
    labels = [f"l{i} ({words[int(moves[i])]})" for i in range(n)]
    colours = ("#4c78a8", "#9ecae9", "#f58518", "#ffbf79")
    for k in range(4):
        fig.add_trace(go.Bar(x=labels, y=round_sig(sims[repetition, :, k]), name=SIMILARITY_NAMES[k],
                             marker_color=colours[k], hovertemplate="%{x}: %{y:.4f}<extra>" + SIMILARITY_NAMES[k] + "</extra>"),
                      1, 2)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
    fig.update_xaxes(range=[-0.5, W + 8], row=1, col=1)
    fig.update_yaxes(title_text="cosine similarity", row=1, col=2)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=dict(text=title, font_size=12), barmode="group", autosize=True, height=max(400, int(H * 2.2) + 120),
                      margin=dict(l=10, r=10, t=60, b=10), legend=dict(orientation="h", y=-0.12, font_size=10))
    return fig


def _pixel_marker(r: int, c: int, h: int, w: int, H: int, W: int) -> go.Scatter:
    return go.Scatter(x=[round((c + 0.5) * W / w - 0.5, 3)], y=[round((r + 0.5) * H / h - 0.5, 3)], mode="markers",
                      marker=dict(symbol="x", size=10, color="white", line=dict(width=1, color="black")),
                      name="selected pixel", hovertemplate=f"pixel (row {r}, col {c})<extra></extra>")


def gsrpa_pixel(attention_or_details, index: int = 0) -> tuple[int, int]:
    """The most attended cell ``(row, col)`` of image ``index`` (the default pixel of the GSRPA figure)."""
    attention = getattr(attention_or_details, "attention", attention_or_details)
    attention = _pick(_numpy(attention, "attention"), index, 3, "attention")[0]  # (h, w)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(attention)), attention.shape))


def gsrpa_figure(image, details, index: int = 0, pixel: tuple[int, int] | None = None, max_matrix: int = 64,
                 title: str = "") -> go.Figure:
    """GSRPA (MBGN Eq. 2, 4-5, 7) for image ``index`` of the batch, four panels:

    1. the attention map ``sigmoid(Eq. 7)`` (``details.attention (B, 1, h, w)``) over the image;
    2. the relation matrix ``details.relation (B, N, N)`` of Eq. 2 with its axes (query pixel i down,
       pixel j across, row-major over the ``h x w`` grid; block-averaged to at most ``max_matrix``
       a side), the selected pixel's row and column outlined;
    3. Relation(i, :), the selected pixel's row, over the image: what Eq. 4 reshapes;
    4. Relation(:, i), its column: what Eq. 5 transposes.

    ``pixel`` = (row, col) on the ``h x w`` grid (default: the most attended cell). Hovering a
    map shows its cell (row, col) and value, the same grid the titles name. ``image``: the batch
    or the one image to draw. Traces (10): image, attention, marker | relation | image, row map,
    marker | image, column map, marker. Values rounded to 4 significant digits.
    """
    attention = _pick(_numpy(details.attention, "details.attention"), index, 3, "details.attention")[0]  # (h, w)
    relation = _pick(_numpy(details.relation, "details.relation"), index, 2, "details.relation")  # (N, N)
    h, w = attention.shape
    if relation.shape != (h * w, h * w):
        raise ValueError(f"gsrpa_figure: relation {relation.shape} does not match an attention map of {h}x{w}")
    if pixel is None:
        pixel = gsrpa_pixel(details.attention, index)
    r, c = (int(v) for v in pixel)
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"gsrpa_figure: pixel {tuple(pixel)} outside the {h}x{w} grid")
    picture = to_display_image(select_image(image, index))
    H, W = picture.shape[:2]
    i = r * w + c
    row_map = relation[i].reshape(h, w)  # (h, w)  Relation(i, :)
    column_map = relation[:, i].reshape(h, w)  # (h, w)  Relation(:, i)
    small = block_average(relation, max_matrix)
    factor = max(1, math.ceil(relation.shape[0] / max_matrix))
    fig = make_subplots(rows=1, cols=4, column_widths=[0.2, 0.4, 0.2, 0.2], horizontal_spacing=0.06, subplot_titles=(
        f"attention ({h}x{w})",
        f"relation N x N (N = {h * w}{f', {factor}x{factor} blocks' if factor > 1 else ''})",
        f"row of pixel ({r}, {c}) (Eq. 4)", f"column of pixel ({r}, {c}) (Eq. 5)"))
    fig.add_trace(_image_trace(picture), 1, 1)
    fig.add_trace(_heatmap_over_image(attention, (H, W), "attention", zmin=0, zmax=1, colorbar_x=0.17), 1, 1)
    fig.add_trace(_pixel_marker(r, c, h, w, H, W), 1, 1)
    fig.add_trace(go.Heatmap(z=_z(small), x0=(factor - 1) / 2, dx=factor, y0=(factor - 1) / 2, dy=factor,
                             colorscale="Viridis", name="relation", colorbar=dict(x=0.63, len=0.8, thickness=10),
                             hovertemplate="Relation(i=%{y}, j=%{x}) = %{z:.4g}<extra></extra>"), 1, 2)
    for trace_map, name, col, bar_x in ((row_map, "relation row", 3, 0.815), (column_map, "relation column", 4, 1.0)):
        fig.add_trace(_image_trace(picture), 1, col)
        fig.add_trace(_heatmap_over_image(trace_map, (H, W), name, colorscale="Viridis", opacity=0.6,
                                          colorbar_x=bar_x), 1, col)
        fig.add_trace(_pixel_marker(r, c, h, w, H, W), 1, col)
    N = h * w
    for x0, x1, y0, y1 in ((-0.5, N - 0.5, i - 0.5, i + 0.5), (i - 0.5, i + 0.5, -0.5, N - 0.5)):
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line=dict(color="white", width=1), row=1, col=2)
    _hide_axes(fig)
    fig.update_xaxes(showticklabels=True, title_text="pixel j", title_font_size=10, tickfont_size=9, row=1, col=2)
    fig.update_yaxes(showticklabels=True, title_text="pixel i (row-major)", title_font_size=10, tickfont_size=9,
                     autorange="reversed", scaleanchor="x2", row=1, col=2)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=dict(text=title, font_size=13), height=380, autosize=True,
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
    fig = go.Figure(go.Heatmap(z=_z(values), x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
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
        fig = go.Figure(go.Heatmap(z=_z(matrix), x=names, y=names, colorscale="Viridis",
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


def rows_identical(scores, present=None, atol: float = 1e-5) -> bool:
    """True when every present query row of an attention matrix ``(n, n)`` is the same over the
    present key columns (fewer than two present rows: False). Additive attention (MSRA Eq. 4,
    ``S_pq = softmax_q LeakyReLU(a . r_p + b . r_q)``) does this: the query's own term ``a . r_p``
    shifts all of its scores alike and the softmax over q cancels it, unless LeakyReLU's kink
    lies between them (the "static attention" of GAT that GATv2 fixes)."""
    scores = np.asarray(scores, np.float64)
    present = np.ones(scores.shape[0], bool) if present is None else np.asarray(present, bool)
    block = scores[np.ix_(present, present)]
    return bool(block.shape[0] >= 2 and np.abs(block - block[:1]).max() <= atol)


STATIC_ATTENTION_NOTE = ("rows of S are identical in {levels}: additive attention (Eq. 4) is static in the query "
                         "node, its own term cancels in the softmax over q")


def pose_pyramid_figure(image, node_positions: Mapping[str, object], attention: Mapping[str, object],
                        presence: Mapping[str, object] | None = None, node_names: Mapping[str, Sequence[str]] | None = None,
                        index: int = 0) -> go.Figure:
    """MSRA's pose pyramid for image ``index``: the nodes of every level over the image (j1 keypoints,
    j2 parts, j3 regions) and each level's intra-layer attention S (Eq. 4) as a heatmap.

    ``image``: the batch or the one image to draw; ``node_positions``: level -> ``(B, n, 2)``
    [x, y] in input pixels (-1 where absent); ``attention``: level -> ``(B, n, n)``;
    ``presence`` (optional): level -> ``(B, n)`` bool (default: position >= 0). Traces: the image
    + one node scatter per level + one heatmap per level. The width follows the page (autosize).
    Where a level's rows are all the same (:func:`rows_identical`), a note under the figure says
    so and why, and the level's title is marked "(rows identical)".
    """
    levels = [level for level in node_positions if level in attention]
    if not levels:
        raise ValueError("pose_pyramid_figure: node_positions and attention share no level")
    picture = to_display_image(select_image(image, index))
    per_level = []
    for level in levels:
        positions = _pick(_numpy(node_positions[level], f"node_positions[{level!r}]"), index, 2, "node_positions")
        scores = _pick(_numpy(attention[level], f"attention[{level!r}]"), index, 2, "attention")
        if presence is not None and level in presence:
            present = _pick(_numpy(presence[level], f"presence[{level!r}]"), index, 1, "presence").astype(bool)
        else:
            present = (positions >= 0).all(axis=1)
        per_level.append((level, positions, scores, present))
    static = [level for level, _, scores, present in per_level if rows_identical(scores, present)]
    fig = make_subplots(rows=1, cols=1 + len(levels), column_widths=[0.22] + [0.78 / len(levels)] * len(levels),
                        horizontal_spacing=0.05,
                        subplot_titles=["nodes"] + [f"{level}: S (Eq. 4){' (rows identical)' if level in static else ''}"
                                                    for level in levels])
    fig.add_trace(_image_trace(picture), 1, 1)
    symbols = {"j1": "circle", "j2": "diamond", "j3": "square"}
    for k, (level, positions, scores, present) in enumerate(per_level):
        names = list(node_names[level]) if node_names and level in node_names else [str(i) for i in range(len(positions))]
        fig.add_trace(go.Scatter(
            x=np.round(positions[present, 0], 1), y=np.round(positions[present, 1], 1), mode="markers", name=level,
            text=[names[i] for i in np.flatnonzero(present)], hoverinfo="text+name",
            marker=dict(size=6 + 3 * k, symbol=symbols.get(level, "circle"), color=LEVEL_COLOURS.get(level, "white"),
                        line=dict(width=1, color="black"))), 1, 1)
        fig.add_trace(go.Heatmap(z=_z(scores), x=names, y=names, colorscale="Viridis", showscale=k == len(levels) - 1,
                                 colorbar=dict(thickness=10), name=f"{level} attention",
                                 hovertemplate="S(%{y} -> %{x}) = %{z:.4g}<extra></extra>"), 1, 2 + k)
        fig.update_yaxes(autorange="reversed", row=1, col=2 + k)
        fig.update_xaxes(tickfont_size=7, row=1, col=2 + k)
        fig.update_yaxes(tickfont_size=7, row=1, col=2 + k)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_annotations(font_size=11)
    bottom = 10
    if static:
        fig.add_annotation(text=STATIC_ATTENTION_NOTE.format(levels=", ".join(static)), xref="paper", yref="paper",
                           x=0, y=-0.12, xanchor="left", yanchor="top", showarrow=False, font=dict(size=11, color="#555"))
        bottom = 60
    fig.update_layout(height=440 + bottom - 10, autosize=True, margin=dict(l=10, r=10, t=35, b=bottom),
                      legend=dict(orientation="h", x=0, y=-0.02 if not static else -0.02))
    return fig


def cross_dependency_figure(dependency, names_from: Sequence[str], names_to: Sequence[str], index: int = 0,
                            presence_from=None, presence_to=None, top_k: int = 2,
                            title: str = "") -> go.Figure:
    """A cross-layer dependency matrix (MSRA Eq. 5-7, ``MSRAExplanation.cross_dependency["j1->j2"]``,
    ``(B, n_v, n_v+1)``, each row a softmax over the coarser nodes) as a bipartite graph: the finer
    level's nodes on the left, the coarser level's on the right, each finer node linked to its
    ``top_k`` strongest coarser nodes (line width and opacity ~ weight, hover gives the value).
    Absent nodes (``presence_*`` False) are drawn hollow and get no links.
    Traces: one per link (so each can carry its own width) + 2 node scatters."""
    matrix = _pick(_numpy(dependency, "dependency"), index, 2, "dependency")
    names_from, names_to = list(names_from), list(names_to)
    if matrix.shape != (len(names_from), len(names_to)):
        raise ValueError(f"cross_dependency_figure: dependency {matrix.shape} needs {matrix.shape[0]} + "
                         f"{matrix.shape[1]} names, got {len(names_from)} + {len(names_to)}")
    present_from = np.ones(len(names_from), bool) if presence_from is None else \
        _pick(_numpy(presence_from, "presence_from"), index, 1, "presence_from").astype(bool)
    present_to = np.ones(len(names_to), bool) if presence_to is None else \
        _pick(_numpy(presence_to, "presence_to"), index, 1, "presence_to").astype(bool)
    y_from = np.linspace(1, 0, len(names_from)) if len(names_from) > 1 else np.array([0.5])
    y_to = np.linspace(1, 0, len(names_to)) if len(names_to) > 1 else np.array([0.5])
    fig = go.Figure()
    top = max(float(matrix.max(initial=0.0)), 1e-12)
    for p in np.flatnonzero(present_from):
        weights = np.where(present_to, matrix[p], -np.inf)
        for q in np.argsort(-weights, kind="stable")[:top_k]:
            if not np.isfinite(weights[q]):
                continue
            value = float(round_sig(matrix[p, q]))
            fig.add_trace(go.Scatter(
                x=[0, 1], y=[float(y_from[p]), float(y_to[q])], mode="lines", showlegend=False,
                line=dict(width=round(0.5 + 5 * value / top, 2), color=f"rgba(76,120,168,{round(0.25 + 0.7 * value / top, 3)})"),
                hovertemplate=f"{names_from[p]} -> {names_to[q]}: {value:.4g}<extra></extra>"))
    for x, names, ys, present, side in ((0, names_from, y_from, present_from, "left"),
                                        (1, names_to, y_to, present_to, "right")):
        fig.add_trace(go.Scatter(
            x=[x] * len(names), y=np.round(ys, 4), mode="markers+text", text=names, showlegend=False,
            textposition="middle left" if side == "left" else "middle right", textfont=dict(size=9),
            marker=dict(size=9, color=["#e45756" if v else "white" for v in present], line=dict(width=1, color="#333")),
            hoverinfo="text"))
    _hide_axes(fig)
    fig.update_xaxes(range=[-0.6, 1.6])
    fig.update_layout(title=dict(text=title or f"cross-layer dependency (Eq. 5-7), top {top_k} per node", font_size=12),
                      height=max(300, 22 * max(len(names_from), len(names_to)) + 80), autosize=True,
                      margin=dict(l=10, r=10, t=40, b=10))
    return fig


def attribute_mask_figure(image, masks, names: Sequence[str], attribute: int | str = 0, index: int = 0,
                          probabilities=None, truth=None) -> go.Figure:
    """One ARM mask M_k (MSRA Eq. 1, ``MSRAExplanation.attribute_masks (B, K, h, w)``) over image
    ``index``; the title gives the attribute, its predicted class and probability
    (``probabilities``: K tensors ``(B, C_k)``) and the true class (``truth``: ``(B, K)``) when given.
    Traces: image, mask heatmap."""
    names = list(names)
    k = names.index(attribute) if isinstance(attribute, str) else int(attribute)
    values = _pick(_numpy(masks, "masks"), index, 3, "masks")  # (K, h, w)
    if not 0 <= k < values.shape[0] or values.shape[0] != len(names):
        raise ValueError(f"attribute_mask_figure: attribute {attribute!r} not among {len(names)} names for "
                         f"{values.shape[0]} masks")
    picture = to_display_image(select_image(image, index))
    title = f"{names[k]}"
    if probabilities is not None:
        probs = _pick(_numpy(probabilities[k], "probabilities"), index, 1, "probabilities")
        title += f": predicted {int(np.argmax(probs))} (p = {float(np.max(probs)):.2f})"
    if truth is not None:
        title += f", true {int(_pick(_numpy(truth, 'truth'), index, 1, 'truth')[k])}"
    fig = go.Figure([_image_trace(picture), _heatmap_over_image(values[k], picture.shape, names[k])])
    _hide_axes(fig)
    fig.update_layout(title=dict(text=title, font_size=12), width=300, height=460, margin=dict(l=10, r=10, t=40, b=10))
    return fig


__all__ = [
    "COCO17_SKELETON", "SIGNIFICANT_DIGITS", "aabs_image_steps", "aabs_moves", "aabs_planes_figure",
    "aabs_repetition_figure", "aabs_similarities", "attribute_graph_figure", "attribute_mask_figure", "block_average",
    "cmc_curve", "compare_with_paper", "cross_dependency_figure", "decode_data_uri", "gsrpa_figure", "gsrpa_pixel",
    "image_data_uri", "image_feature_map", "metrics_bar", "plane_rows", "pose_pyramid_figure", "record_image",
    "records_batch", "round_sig", "rows_identical", "sample_grid", "select_image", "structure_labels",
    "structure_similarity_figure", "tint_mask", "to_display_image",
]
