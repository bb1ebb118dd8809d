"""What the notebooks aggregate over many images, and the figures of it (notebooks 01-03).

Each function reads what a model computes (``explain()``, or one module's input through a
forward hook that is removed again) and returns a pandas DataFrame or a plotly figure; nothing
feeds back into the model.

- AABS (MBGN Algorithm 1) over a whole split: :func:`aabs_plane_movement` (one row per image and
  plane: initial and final plane, shift, the image's repetitions), :func:`plane_movement_summary`
  and :func:`plane_movement_figure` (how often and how far planes move, model against model);
  :func:`parts_before_after_figure` (B1..B5 at the body ratio and after AABS, several images).
- MBGN fusion strategies (Table 3): :func:`fusion_units` (the row range of every fused unit, for
  any ``mbgn.FUSIONS`` entry, on AABS planes) and :func:`fusion_strategies_figure`.
- MBGN structure feature: :func:`structure_pair_distances` (same person vs different people).
- GSRPA (MBGN Sec. 3.3): :func:`involution_kernels` (the per-pixel 7x7 kernels of the involution
  block at a chosen pixel, Li et al. Eq. 6) with :func:`involution_kernel_figure`;
  :func:`attention_statistics` and :func:`attention_stages_figure` (the attention per stage, model
  against model: GSRPA, CBAM-S, trained, untrained).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .figures import _heatmap_over_image, _hide_axes, _image_trace, _numpy, _z, go, make_subplots, plane_rows, \
    round_sig, select_image, to_display_image


# ----------------------------------------------------------------------------- splits
def small_test_split(split, num_ids: int):
    """The split with only the query and gallery images of its first ``num_ids`` test identities
    (sorted ids; distractors and junk, id < 0, are kept): a smaller retrieval task that notebooks
    evaluate in seconds. Training records are kept as they are."""
    from reidlab.data.records import ReIDSplit

    ids = sorted({r.pid for r in split.query if r.pid >= 0})
    if num_ids < 1:
        raise ValueError(f"small_test_split: num_ids must be at least 1, got {num_ids}")
    keep = set(ids[:num_ids])
    return ReIDSplit(f"{split.name} (first {len(keep)} test ids)", split.train,
                     [r for r in split.query if r.pid in keep],
                     [r for r in split.gallery if r.pid in keep or r.pid < 0], split.attribute_spec, split.root)


# ----------------------------------------------------------------------------- AABS over a split
def _batches(records, batch_size: int):
    records = list(records)
    for start in range(0, len(records), batch_size):
        yield start, records[start:start + batch_size]


def aabs_plane_movement(model, records, height: int, width: int, batch_size: int = 64, partition: int = 0,
                        device: str = "cpu", progress: bool = False) -> pd.DataFrame:
    """AABS (MBGN Algorithm 1) of ``model`` on every record: one row per (image, plane).

    Columns: ``image`` (position in ``records``), ``pid``, ``plane`` (0..n-1), ``initial`` and
    ``final`` (feature rows, the first row below the plane), ``shift`` (final - initial; negative
    = up), ``repetitions`` (the image's own, :func:`~reidlab.viz.figures.aabs_image_steps`) and
    ``map_rows`` (rows of Branch l's map). The map AABS splits is taken by a forward hook on
    ``model.aabs[partition]`` (removed afterwards), so only the plain forward runs."""
    import torch

    from .figures import aabs_image_steps, records_batch

    aabs = getattr(model, "aabs", None)
    if aabs is None or not 0 <= partition < len(aabs):
        raise ValueError(f"aabs_plane_movement: the model has no AABS partition {partition} (is it an MBGN?)")
    records = list(records)
    if not records:
        raise ValueError("aabs_plane_movement: no records given")
    captured = []
    handle = aabs[partition].register_forward_hook(lambda module, inputs, _out: captured.append(
        (module.forward(inputs[0], return_trace=True), int(inputs[0].shape[2]))))  # .forward: no hook recursion
    rows = []
    iterator = _batches(records, batch_size)
    if progress:
        from reidlab.progress import tqdm

        iterator = tqdm(iterator, total=math.ceil(len(records) / batch_size), desc="AABS over the split", unit="batch")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start, chunk in iterator:
                images = records_batch(chunk, height, width)["image"].to(device)
                captured.clear()
                model(images)
                result, map_rows = captured[-1]
                for b, record in enumerate(chunk):
                    steps = aabs_image_steps(result.trace, b)  # (T_b + 1, n)
                    initial, final = result.initial[b].tolist(), result.planes[b].tolist()
                    for i, (a, z) in enumerate(zip(initial, final)):
                        rows.append({"image": start + b, "pid": record.pid, "plane": i, "initial": a, "final": z,
                                     "shift": z - a, "repetitions": len(steps) - 1,
                                     "map_rows": map_rows})
    finally:
        handle.remove()
        model.train(was_training)
    return pd.DataFrame(rows)


def plane_movement_summary(tables: Mapping[str, pd.DataFrame] | pd.DataFrame) -> pd.DataFrame:
    """Per model and plane: share of images whose plane moved (%), mean |shift| and mean shift
    (rows of the map), and, per model, the share of images with any move and the mean repetitions.

    ``tables``: ``{model name: aabs_plane_movement(...)}`` or one table. Index (model, plane),
    with a plane ``"any"`` row per model; values rounded to 3 decimals."""
    if isinstance(tables, pd.DataFrame):
        tables = {"model": tables}
    if not tables:
        raise ValueError("plane_movement_summary: no tables given")
    out = []
    for name, table in tables.items():
        missing = {"image", "plane", "shift", "repetitions"} - set(table.columns)
        if missing:
            raise KeyError(f"plane_movement_summary: table {name!r} lacks columns {sorted(missing)}")
        moved = table["shift"] != 0
        for plane, part in table.groupby("plane"):
            out.append({"model": name, "plane": f"l{plane}", "images": part["image"].nunique(),
                        "moved (%)": 100 * float((part["shift"] != 0).mean()),
                        "mean |shift| (rows)": float(part["shift"].abs().mean()),
                        "mean shift (rows)": float(part["shift"].mean()),
                        "mean repetitions": float(part["repetitions"].mean())})
        per_image = moved.groupby(table["image"]).any()
        reps = table.groupby("image")["repetitions"].first()
        out.append({"model": name, "plane": "any", "images": int(per_image.size),
                    "moved (%)": 100 * float(per_image.mean()),
                    "mean |shift| (rows)": float(table["shift"].abs().mean()),
                    "mean shift (rows)": float(table["shift"].mean()), "mean repetitions": float(reps.mean())})
    return pd.DataFrame(out).set_index(["model", "plane"]).round(3)


def plane_movement_figure(tables: Mapping[str, pd.DataFrame], title: str = "") -> go.Figure:
    """How far planes move (left: count of (image, plane) per shift in map rows) and how many
    repetitions images take (right), one bar trace per model in each panel (2 per model)."""
    if not tables:
        raise ValueError("plane_movement_figure: no tables given")
    colours = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("plane shift (final - initial, map rows; < 0 = up)", "repetitions per image"))
    shifts = sorted({int(s) for t in tables.values() for s in t["shift"]})
    reps = sorted({int(r) for t in tables.values() for r in t["repetitions"]})
    for k, (name, table) in enumerate(tables.items()):
        counts = table["shift"].value_counts()
        per_image = table.groupby("image")["repetitions"].first().value_counts()
        colour = colours[k % len(colours)]
        fig.add_trace(go.Bar(x=shifts, y=[int(counts.get(s, 0)) for s in shifts], name=name, marker_color=colour,
                             legendgroup=name, hovertemplate=f"{name}: shift %{{x}}: %{{y}} planes<extra></extra>"), 1, 1)
        fig.add_trace(go.Bar(x=reps, y=[int(per_image.get(r, 0)) for r in reps], name=name, marker_color=colour,
                             legendgroup=name, showlegend=False,
                             hovertemplate=f"{name}: %{{x}} repetitions: %{{y}} images<extra></extra>"), 1, 2)
    fig.update_xaxes(dtick=1, title_text="rows", row=1, col=1)
    fig.update_xaxes(dtick=1, title_text="repetitions", row=1, col=2)
    fig.update_yaxes(title_text="planes", row=1, col=1)
    fig.update_yaxes(title_text="images", row=1, col=2)
    fig.update_annotations(font_size=11)
    fig.update_layout(barmode="group", title=dict(text=title, font_size=13), height=360, autosize=True,
                      margin=dict(l=10, r=10, t=60 if title else 35, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def parts_before_after_figure(images, initial, final, feature_height: int, indices: Sequence[int] | None = None,
                              labels: Sequence[str] | None = None, part_names: Sequence[str] | None = None,
                              title: str = "") -> go.Figure:
    """B1..B5 before and after AABS on several images: the body-ratio planes dashed white, the
    AABS planes solid red, the part names in the final parts. ``initial`` / ``final``: ``(B, n)``
    planes (``AABSResult.initial`` / ``.planes``); ``labels``: a subtitle per shown image.
    Traces: one image per panel; planes are shapes."""
    initial, final = _numpy(initial, "initial"), _numpy(final, "final")
    if initial.shape != final.shape or initial.ndim != 2:
        raise ValueError(f"parts_before_after_figure: initial {initial.shape} and final {final.shape} must be (B, n)")
    indices = list(range(min(len(final), 6))) if indices is None else [int(i) for i in indices]
    n = final.shape[1]
    part_names = list(part_names) if part_names is not None else [f"B{i + 1}" for i in range(n + 1)]
    labels = list(labels) if labels is not None else [f"image {i}" for i in indices]
    fig = make_subplots(rows=1, cols=len(indices), subplot_titles=labels, horizontal_spacing=0.03)
    for col, index in enumerate(indices, start=1):
        picture = to_display_image(select_image(images, index))
        H, W = picture.shape[:2]
        fig.add_trace(_image_trace(picture), 1, col)
        before = plane_rows(initial[index], feature_height, H)
        after = plane_rows(final[index], feature_height, H)
        for rows, dash, colour in ((before, "dash", "white"), (after, "solid", "#ff1744")):
            for y in rows:
                fig.add_shape(type="line", x0=-0.5, x1=W - 0.5, y0=float(y) - 0.5, y1=float(y) - 0.5,
                              line=dict(color=colour, width=2, dash=dash), row=1, col=col)
        bounds = np.concatenate([[0.0], after, [float(H)]])
        for k, name in enumerate(part_names[: n + 1]):
            fig.add_annotation(x=2, y=float(bounds[k] + bounds[k + 1]) / 2 - 0.5, text=name, showarrow=False,
                               xanchor="left", font=dict(size=10, color="#ffea00"), row=1, col=col)
    _hide_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title or "B1..B5: body ratio (dashed) and after AABS (red)", font_size=12),
                      height=380, width=max(320, 150 * len(indices)), margin=dict(l=5, r=5, t=60, b=5), showlegend=False)
    return fig


# ----------------------------------------------------------------------------- fusion strategies (Table 3)
def fusion_units(fusion: str, planes=None, feature_height: int = 24) -> list[tuple[str, int, int]]:
    """The fused units of an MBGN fusion strategy (``mbgn.FUSIONS``: pcb, m, m+f, m+c, mgn) as
    ``(name, first row, end row)`` on a map of ``feature_height`` rows.

    ``planes``: the body-ratio partition's AABS planes ``(n,)`` (one image); ``None`` takes the
    initial planes. Partitions with another ratio (PCB's six stripes, MGN's halves and thirds) are
    fixed splits (as :class:`~reidlab.models.mbgn.MBGN` with AABS off for them)."""
    from reidlab.models.aabs import BODY_RATIO, initial_planes
    from reidlab.models.mbgn import FUSIONS

    if fusion not in FUSIONS:
        raise ValueError(f"fusion_units: unknown fusion {fusion!r}; known: {sorted(FUSIONS)}")
    units = []
    for ratio, prefix, groups in FUSIONS[fusion]:
        if tuple(ratio) == tuple(BODY_RATIO) and planes is not None:
            cut = [int(v) for v in _numpy(planes, "planes").reshape(-1)]
            if len(cut) != len(ratio) - 1:
                raise ValueError(f"fusion_units: {len(cut)} planes given, the body ratio needs {len(ratio) - 1}")
        else:
            cut = initial_planes(feature_height, ratio)
        bounds = [0, *cut, feature_height]
        for group in groups:
            name = "+".join(f"{prefix}{i + 1}" for i in group)
            units.append((name, bounds[group[0]], bounds[group[-1] + 1]))
    return units


FUSION_TITLES = {"pcb": "PCB", "m": "AABS+M", "m+f": "AABS+M+F (MBGN)", "m+c": "AABS+M+C", "mgn": "MGN"}


def fusion_strategies_figure(image, planes, feature_height: int, fusions: Sequence[str] = ("pcb", "m", "m+f", "m+c", "mgn"),
                             reported: Mapping[str, tuple[float, float]] | None = None, title: str = "") -> go.Figure:
    """MBGN Table 3 side by side on one image: per fusion strategy, the image and one vertical bar
    per fused unit beside it spanning the unit's rows (overlapping units stand side by side).
    ``planes``: the image's AABS planes ``(n,)``; ``reported``: fusion -> (rank-1, mAP) of the
    paper for the subtitles. Traces per panel: image + one line per unit."""
    picture = to_display_image(image)
    H, W = picture.shape[:2]
    names = []
    for fusion in fusions:
        label = FUSION_TITLES.get(fusion, fusion)
        if reported and fusion in reported:
            r1, m = reported[fusion]
            label += f"<br>paper {r1:.1f} / {m:.1f}"
        names.append(label)
    fig = make_subplots(rows=1, cols=len(fusions), subplot_titles=names, horizontal_spacing=0.02)
    colours = ("#e45756", "#4c78a8", "#54a24b", "#f58518", "#b279a2", "#72b7b2", "#ff9da6")
    for col, fusion in enumerate(fusions, start=1):
        fig.add_trace(_image_trace(picture), 1, col)
        for k, (name, start, end) in enumerate(fusion_units(fusion, planes, feature_height)):
            y0, y1 = start * H / feature_height, end * H / feature_height
            x = W + 3 + 5 * k
            fig.add_trace(go.Scatter(x=[x, x], y=[round(y0, 3), round(y1 - 1, 3)], mode="lines+markers",
                                     line=dict(color=colours[k % len(colours)], width=4), marker=dict(size=4),
                                     name=name, hovertemplate=f"{name}: rows {start}-{end - 1}<extra>{fusion}</extra>",
                                     showlegend=False), 1, col)
        fig.update_xaxes(range=[-0.5, W + 5 + 5 * 7], row=1, col=col)
    _hide_axes(fig)
    for col in range(1, len(fusions) + 1):
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title or "fusion strategies (MBGN Table 3): one bar per fused unit", font_size=12),
                      height=400, autosize=True, margin=dict(l=5, r=5, t=80, b=5))
    return fig


TABLE3_PRESETS = {"pcb": "mbgn/table3/PCB", "m": "mbgn/table3/AABS+M", "m+f": "mbgn/table3/AABS+M+F",
                  "m+c": "mbgn/table3/AABS+M+C", "mgn": "mbgn/table3/MGN"}


def table3_reported(dataset: str = "market1501") -> dict[str, tuple[float, float]]:
    """MBGN Table 3 as the paper reports it: fusion -> (rank-1, mAP) in %, from the presets."""
    from reidlab.presets import get_preset

    out = {}
    for fusion, name in TABLE3_PRESETS.items():
        reported = get_preset(name).reported.get(dataset, {})
        if "rank1" in reported and "mAP" in reported:
            out[fusion] = (float(reported["rank1"]), float(reported["mAP"]))
    return out


# ----------------------------------------------------------------------------- structure feature
def choose_pair(pids, camids, seed: int = 0) -> tuple[int, int, int]:
    """Three indices ``(a, b, c)``: ``a`` and ``b`` show the same person from two cameras, ``c``
    another person (seeded choice among the possible ones)."""
    pids, camids = np.asarray(pids), np.asarray(camids)
    rng = np.random.default_rng(seed)
    pairs = [(i, j) for i in range(len(pids)) for j in range(i + 1, len(pids))
             if pids[i] == pids[j] and camids[i] != camids[j]]
    if not pairs:
        raise ValueError("choose_pair: no two images of one person from two cameras among the given ones")
    a, b = pairs[int(rng.integers(len(pairs)))]
    others = np.flatnonzero(pids != pids[a])
    if not len(others):
        raise ValueError("choose_pair: every image shows the same person")
    return int(a), int(b), int(others[int(rng.integers(len(others)))])


def pair_distance_figure(tables: Mapping[str, pd.DataFrame], title: str = "") -> go.Figure:
    """Box plots of :func:`structure_pair_distances` per model: same person vs different people
    (2 traces per model)."""
    if not tables:
        raise ValueError("pair_distance_figure: no tables given")
    fig = go.Figure()
    for same, colour in ((True, "#54a24b"), (False, "#e45756")):
        xs, ys = [], []
        for name, table in tables.items():
            part = table[table["same"] == same]
            xs += [name] * len(part)
            ys += list(round_sig(part["distance"].to_numpy()))
        fig.add_trace(go.Box(x=xs, y=ys, name="same person" if same else "different people", marker_color=colour,
                             boxpoints=False))
    fig.update_layout(boxmode="group", title=dict(text=title or "structure similarity: mean |difference| of a pair",
                                                  font_size=12),
                      yaxis_title="mean |S_a - S_b| (45 entries)", height=360, autosize=True,
                      margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.15))
    return fig


def structure_pair_distances(similarity, pids, max_pairs: int = 2000, seed: int = 0) -> pd.DataFrame:
    """How different two images' 10 x 10 structure similarities are, for pairs of the same person
    and pairs of different people: one row per pair, ``i, j, same, distance`` (mean absolute
    difference over the 45 distinct entries). ``similarity``: ``(B, 2P, 2P)``; ``pids``: ``(B,)``.
    At most ``max_pairs`` pairs of each kind (seeded sample)."""
    values = _numpy(similarity, "similarity").astype(np.float64)
    pids = np.asarray(pids)
    if values.ndim != 3 or values.shape[1] != values.shape[2] or len(values) != len(pids):
        raise ValueError(f"structure_pair_distances: similarity {values.shape} needs (B, n, n) with B = {len(pids)}")
    upper = np.triu_indices(values.shape[1], k=1)
    flat = values[:, upper[0], upper[1]]  # (B, 45)
    i, j = np.triu_indices(len(pids), k=1)
    same = pids[i] == pids[j]
    rng = np.random.default_rng(seed)
    keep = []
    for kind in (True, False):
        where = np.flatnonzero(same == kind)
        if len(where) > max_pairs:
            where = np.sort(rng.choice(where, max_pairs, replace=False))
        keep.append(where)
    keep = np.concatenate(keep)
    distance = np.abs(flat[i[keep]] - flat[j[keep]]).mean(axis=1)
    return pd.DataFrame({"i": i[keep], "j": j[keep], "same": same[keep], "distance": distance})


# ----------------------------------------------------------------------------- GSRPA
def involution_kernels(model, images, stage: str, pixel: tuple[int, int], index: int = 0, layer: int = 1) -> np.ndarray:
    """The involution kernels (Li et al. Eq. 6, ``H = phi(X_ij)``) that GSRPA's involution block
    at ``stage`` generates at ``pixel`` (row, col of that stage's map) for image ``index``:
    ``(G, K, K)``, one K x K kernel per channel group. ``layer``: the block's first (1) or second (2)
    involution. The layer's input is read by a forward hook during one eval forward (removed after)."""
    import torch

    attention = getattr(model, "attention", None)
    if attention is None or stage not in attention or not hasattr(attention[stage], "involution"):
        known = [k for k in (attention or {}) if hasattr(attention[k], "involution")]
        raise ValueError(f"involution_kernels: no GSRPA at stage {stage!r}; stages with one: {known}")
    if layer not in (1, 2):
        raise ValueError(f"involution_kernels: layer must be 1 or 2, got {layer}")
    inv = getattr(attention[stage].involution, f"inv{layer}")
    captured = []
    handle = inv.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images[index:index + 1])
            kernel = inv.kernels(captured[0])  # (1, G, K*K, h, w)
    finally:
        handle.remove()
        model.train(was_training)
    h, w = kernel.shape[-2:]
    r, c = (int(v) for v in pixel)
    if not (0 <= r < h and 0 <= c < w):
        raise ValueError(f"involution_kernels: pixel {tuple(pixel)} outside the {h}x{w} map of stage {stage!r}")
    K = inv.kernel_size
    return kernel[0, :, :, r, c].reshape(-1, K, K).float().cpu().numpy()  # (G, K, K)


def involution_kernel_figure(image, kernels, pixel: tuple[int, int], map_size: tuple[int, int], groups: int = 4,
                             title: str = "") -> go.Figure:
    """The image with the chosen pixel (a box of the kernel's reach) and the first ``groups``
    K x K kernels at that pixel (one colour scale, centred on 0). Traces: image, box, one heatmap per group."""
    kernels = _numpy(kernels, "kernels")
    if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2]:
        raise ValueError(f"involution_kernel_figure: kernels must be (G, K, K), got {kernels.shape}")
    groups = min(groups, kernels.shape[0])
    picture = to_display_image(image)
    H, W = picture.shape[:2]
    h, w = map_size
    r, c = (int(v) for v in pixel)
    K = kernels.shape[1]
    sx, sy = W / w, H / h
    x0, x1 = (c - K // 2) * sx - 0.5, (c + K // 2 + 1) * sx - 0.5
    y0, y1 = (r - K // 2) * sy - 0.5, (r + K // 2 + 1) * sy - 0.5
    fig = make_subplots(rows=1, cols=1 + groups, column_widths=[0.2] + [0.8 / groups] * groups,
                        horizontal_spacing=0.03,
                        subplot_titles=[f"pixel ({r}, {c}) of {h}x{w}"] + [f"group {g}" for g in range(groups)])
    fig.add_trace(_image_trace(picture), 1, 1)
    fig.add_trace(go.Scatter(x=[round(v, 3) for v in (x0, x1, x1, x0, x0)], y=[round(v, 3) for v in (y0, y0, y1, y1, y0)],
                             mode="lines", line=dict(color="white", width=1.5), name=f"{K}x{K} reach",
                             hoverinfo="name"), 1, 1)
    bound = float(round_sig(np.abs(kernels[:groups]).max(initial=1e-12)))
    offsets = [str(v) for v in range(-(K // 2), K // 2 + 1)]
    for g in range(groups):
        fig.add_trace(go.Heatmap(z=_z(kernels[g]), x=offsets, y=offsets, zmin=-bound, zmax=bound, colorscale="RdBu",
                                 reversescale=True, showscale=g == groups - 1, colorbar=dict(thickness=10),
                                 name=f"group {g}", hovertemplate="offset (%{y}, %{x}): %{z:.4g}<extra></extra>"),
                      1, 2 + g)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{2 + g}", row=1, col=2 + g)
        fig.update_xaxes(tickfont_size=8, row=1, col=2 + g)
        fig.update_yaxes(tickfont_size=8, row=1, col=2 + g)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, W - 0.5], row=1, col=1)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[H - 0.5, -0.5], row=1, col=1)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title or "involution kernels at the chosen pixel (Li et al. Eq. 6)", font_size=12),
                      height=300, autosize=True, margin=dict(l=10, r=10, t=60, b=10), showlegend=False)
    return fig


def _panel_base():
    from .widgets import Panel

    return Panel


class InvolutionPanel(_panel_base()):
    """Pick an image, a GSRPA stage and a pixel: the involution kernels there
    (:func:`involution_kernels`, :func:`involution_kernel_figure`). ``models``: name -> model
    (e.g. trained and untrained); one figure per model, all at the same controls."""

    def __init__(self, models: Mapping[str, object], images, stage: str = "layer1", groups: int = 4):
        super().__init__()
        from .widgets import choice_picker, image_picker, pixel_picker

        if not models:
            raise ValueError("InvolutionPanel: no models given")
        self.models, self.images, self.groups = dict(models), images, groups
        first = next(iter(self.models.values()))
        stages = [k for k in first.attention if hasattr(first.attention[k], "involution")]
        if not stages:
            raise ValueError("InvolutionPanel: the model has no GSRPA stage")
        self.image = image_picker(len(images))
        self.stage = choice_picker(stages, "stage", stage if stage in stages else None)
        h, w = self.grid()
        self.row, self.col = pixel_picker(h, w, (h // 2, w // 2))
        self.stage.observe(self._stage_changed, names="value")
        self._start(self.image, self.stage, self.row, self.col)

    def grid(self) -> tuple[int, int]:
        module = next(iter(self.models.values())).attention[self.stage.value]
        return module.spatial_size

    def _stage_changed(self, _change) -> None:
        self._fit_pixel_pickers(*self.grid())

    def build(self) -> tuple[go.Figure, ...]:
        index, stage, pixel = self.image.value, self.stage.value, (self.row.value, self.col.value)
        return tuple(involution_kernel_figure(
            select_image(self.images, index), involution_kernels(model, self.images, stage, pixel, index),
            pixel, self.grid(), self.groups, title=f"{name}: involution kernels, {stage}, image {index}")
            for name, model in self.models.items())

    def view(self):
        import ipywidgets as widgets

        box = super().view()
        return widgets.VBox([box.children[0], *self.live])  # figures one under another


def attention_statistics(attentions: Mapping[str, Mapping[str, object]]) -> pd.DataFrame:
    """Per model and stage: the attention's mean, its spread over the map (std over pixels,
    averaged over images) and its range (max - min, averaged). ``attentions``: model name ->
    ``explanation.attention`` (stage -> details with ``.attention (B, 1, h, w)``). Rounded to 3 decimals."""
    rows = []
    for model, stages in attentions.items():
        for stage, details in stages.items():
            values = _numpy(getattr(details, "attention", details), f"{model}/{stage}").astype(np.float64)
            flat = values.reshape(values.shape[0], -1)  # (B, h*w)
            rows.append({"model": model, "stage": stage, "map": "x".join(str(v) for v in values.shape[-2:]),
                         "mean": float(flat.mean()), "std over pixels": float(flat.std(axis=1).mean()),
                         "max - min": float((flat.max(axis=1) - flat.min(axis=1)).mean())})
    if not rows:
        raise ValueError("attention_statistics: no attention maps given")
    return pd.DataFrame(rows).set_index(["model", "stage"]).round(3)


def attention_stages_figure(images, attentions: Mapping[str, Mapping[str, object]], index: int = 0,
                            stages: Sequence[str] | None = None, title: str = "") -> go.Figure:
    """The attention map of every stage over image ``index``, one row per model (e.g. GSRPA and
    CBAM-S, trained and untrained), one column per stage, on one colour scale [0, 1].
    Traces per panel: image + heatmap."""
    if not attentions:
        raise ValueError("attention_stages_figure: no models given")
    stages = list(stages) if stages is not None else list(next(iter(attentions.values())))
    picture = to_display_image(select_image(images, index))
    H, W = picture.shape[:2]
    models = list(attentions)
    fig = make_subplots(rows=len(models), cols=len(stages), horizontal_spacing=0.02, vertical_spacing=0.06,
                        subplot_titles=[f"{m}: {s}" for m in models for s in stages])
    for r, model in enumerate(models, start=1):
        for c, stage in enumerate(stages, start=1):
            fig.add_trace(_image_trace(picture), r, c)
            details = attentions[model].get(stage)
            if details is None:
                continue
            values = _numpy(getattr(details, "attention", details), f"{model}/{stage}")
            values = values[index, 0] if values.ndim == 4 else values[index]
            fig.add_trace(_heatmap_over_image(values, (H, W), f"{model} {stage}", zmin=0, zmax=1,
                                              showscale=(r, c) == (1, len(stages))), r, c)
    _hide_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title or f"attention per stage, image {index}", font_size=12),
                      height=60 + 290 * len(models), autosize=True, margin=dict(l=5, r=5, t=60, b=5))
    return fig


__all__ = [
    "FUSION_TITLES", "InvolutionPanel", "TABLE3_PRESETS", "aabs_plane_movement", "choose_pair", "pair_distance_figure",
    "table3_reported", "attention_stages_figure", "attention_statistics", "fusion_strategies_figure",
    "fusion_units", "involution_kernel_figure", "involution_kernels", "parts_before_after_figure",
    "plane_movement_figure", "plane_movement_summary", "structure_pair_distances", "small_test_split",
]
