"""Figures over results: rank-k retrieval lists (MBGN Fig. 3-4, MSRA Fig. 4), t-SNE of test
embeddings, and the ablation views of a batch of runs (mean +- std over seeds beside the paper's
figure, overlaid training curves).

Inputs are what the engine produces: a query x gallery distance matrix with the ids and cameras,
feature matrices, a results DataFrame (one row per run: ``preset``, ``seed``, metric columns such
as ``rank1`` / ``mAP`` in %, and the paper's figures as ``paper_<metric>``) and per-run log
DataFrames (``reidlab.engine.read_log``: one row per epoch). Figure data is rounded
(:func:`~reidlab.viz.figures.round_sig`) so stored notebooks stay stable.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .figures import _hide_axes, _image_trace, _numpy, go, make_subplots, round_sig, to_display_image

MATCH_COLOUR = (46, 160, 67)  # green border: same identity
MISMATCH_COLOUR = (220, 38, 38)  # red border: another identity
PAPER_COLOUR = "#bab0ac"


# ----------------------------------------------------------------------------- retrieval
def rank_list(distances, query_index: int, query_pids, query_camids, gallery_pids, gallery_camids, k: int = 10,
              exclude_same_camera: bool = True) -> pd.DataFrame:
    """The ``k`` nearest gallery images of query ``query_index``: columns ``rank`` (1..k),
    ``gallery_index``, ``pid``, ``camid``, ``distance``, ``match`` (same id).

    ``exclude_same_camera``: leave out gallery images of the same id *and* camera, as the
    Market-1501 protocol does (they are junk, never counted)."""
    dist = _numpy(distances, "distances").astype(np.float64)
    if dist.ndim != 2:
        raise ValueError(f"rank_list: distances must be (queries, gallery), got shape {dist.shape}")
    if not 0 <= query_index < dist.shape[0]:
        raise IndexError(f"rank_list: query_index {query_index} out of range for {dist.shape[0]} queries")
    q_pids, q_cams = _numpy(query_pids, "query_pids"), _numpy(query_camids, "query_camids")
    g_pids, g_cams = _numpy(gallery_pids, "gallery_pids"), _numpy(gallery_camids, "gallery_camids")
    if len(g_pids) != dist.shape[1] or len(g_cams) != dist.shape[1] or len(q_pids) != dist.shape[0]:
        raise ValueError("rank_list: the ids/cameras do not match the distance matrix's shape")
    row = dist[query_index]
    keep = np.ones(len(row), bool)
    if exclude_same_camera:
        keep = ~((g_pids == q_pids[query_index]) & (g_cams == q_cams[query_index]))
    candidates = np.flatnonzero(keep)
    order = candidates[np.argsort(row[candidates], kind="stable")][:k]
    return pd.DataFrame({
        "rank": np.arange(1, len(order) + 1), "gallery_index": order, "pid": g_pids[order], "camid": g_cams[order],
        "distance": round_sig(row[order]), "match": g_pids[order] == q_pids[query_index],
    })


def framed(image, colour: Sequence[int], width: int = 3) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` uint8 with a ``width``-pixel border of ``colour`` drawn inside it."""
    picture = to_display_image(image).copy()
    picture[:width], picture[-width:] = colour, colour
    picture[:, :width], picture[:, -width:] = colour, colour
    return picture


def rank_list_figure(query_image, gallery_images, ranking: pd.DataFrame, query_label: str = "query",
                     thumb_width: int = 80) -> go.Figure:
    """The query and its rank-k list (:func:`rank_list`) as thumbnails, each gallery image framed
    green (same identity) or red (another); titles give rank, id and camera. ``gallery_images``:
    a sequence (paths, arrays or tensors) indexed by ``ranking.gallery_index``.
    Traces: 1 + k images."""
    if ranking.empty:
        raise ValueError("rank_list_figure: the ranking is empty")
    titles = [query_label] + [f"{r.rank}: id {r.pid} / c{r.camid}" for r in ranking.itertuples()]
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.008)
    fig.add_trace(_image_trace(to_display_image(query_image), name="query"), 1, 1)
    for col, r in enumerate(ranking.itertuples(), start=2):
        colour = MATCH_COLOUR if r.match else MISMATCH_COLOUR
        fig.add_trace(_image_trace(framed(gallery_images[int(r.gallery_index)], colour), name=f"rank {r.rank}"), 1, col)
    _hide_axes(fig)
    fig.update_annotations(font_size=9)
    fig.update_layout(height=int(thumb_width * 2.2) + 40, autosize=True, margin=dict(l=5, r=5, t=30, b=5),
                      showlegend=False)
    return fig


def tsne_embedding(features, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, fixed ``seed``) of ``features (N, D)``, rounded; ``(N, 2)``.
    ``perplexity`` is capped below N as scikit-learn requires; ``max_iter`` >= 250."""
    from sklearn.manifold import TSNE

    array = _numpy(features, "features").astype(np.float32)
    if array.ndim != 2 or len(array) < 3:
        raise ValueError(f"tsne_embedding: features must be (N >= 3, D), got shape {array.shape}")
    perplexity = float(min(perplexity, (len(array) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                  max_iter=max_iter).fit_transform(array)
    return round_sig(points)


def tsne_figure(features=None, pids=None, points=None, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000,
                title: str = "t-SNE of test embeddings (colour = identity)") -> go.Figure:
    """t-SNE of embeddings coloured by identity (one trace per identity, so the legend toggles it).
    Give ``features`` (then :func:`tsne_embedding` runs) or precomputed ``points (N, 2)``."""
    if points is None:
        if features is None:
            raise ValueError("tsne_figure: give features or points")
        points = tsne_embedding(features, seed, perplexity, max_iter)
    points = np.asarray(points, np.float64)
    labels = _numpy(pids, "pids")
    if len(labels) != len(points):
        raise ValueError(f"tsne_figure: {len(points)} points but {len(labels)} ids")
    fig = go.Figure()
    for pid in np.unique(labels):
        chosen = labels == pid
        fig.add_trace(go.Scatter(x=round_sig(points[chosen, 0]), y=round_sig(points[chosen, 1]), mode="markers",
                                 name=f"id {pid}", marker=dict(size=6), hovertemplate=f"id {pid}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font_size=13), height=480, autosize=True,
                      margin=dict(l=10, r=10, t=40, b=10), showlegend=len(np.unique(labels)) <= 30)
    return fig


# ----------------------------------------------------------------------------- ablations
def ablation_summary(results: pd.DataFrame, metric: str = "rank1", group_by: str = "preset") -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; 0 for one run) and count of ``metric`` per ``group_by``
    value, with the paper's figure (column ``paper_<metric>``, first value per group) when present.
    Rounded to 4 significant digits; groups in their first-seen order."""
    for column in (metric, group_by):
        if column not in results.columns:
            raise KeyError(f"ablation: results have no column {column!r}; columns: {list(results.columns)}")
    grouped = results.groupby(group_by, sort=False)[metric]
    table = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0), "runs": grouped.count()})
    paper = f"paper_{metric}"
    if paper in results.columns:
        table["paper"] = results.groupby(group_by, sort=False)[paper].first()
    for column in ("mean", "std", "paper"):
        if column in table:
            table[column] = round_sig(table[column].to_numpy(np.float64))
    return table


def ablation_bar_figure(results: pd.DataFrame, metric: str = "rank1", group_by: str = "preset",
                        title: str = "") -> go.Figure:
    """Bars of :func:`ablation_summary`: ours as mean with +- std error bars over seeds, the paper's
    reported figure beside (hatched grey) where known. Traces: ours (+ paper)."""
    table = ablation_summary(results, metric, group_by)
    names = [str(g) for g in table.index]
    fig = go.Figure(go.Bar(x=names, y=table["mean"], name=f"ours (mean +- std, n = {int(table['runs'].max())})",
                           error_y=dict(type="data", array=table["std"], visible=True), marker_color="#4c78a8",
                           customdata=table["runs"], hovertemplate="%{x}: %{y:.4g} +- %{error_y.array:.3g} "
                                                                   "(%{customdata} runs)<extra></extra>"))
    if "paper" in table and table["paper"].notna().any():
        fig.add_trace(go.Bar(x=names, y=table["paper"], name="paper", marker_color=PAPER_COLOUR,
                             marker_pattern_shape="/", hovertemplate="%{x}: paper %{y}<extra></extra>"))
    fig.update_layout(barmode="group", title=dict(text=title or f"{metric} by {group_by}", font_size=13),
                      yaxis_title=metric, height=420, autosize=True, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def training_curves_figure(logs: Mapping[str, pd.DataFrame], runs: Sequence[str] | None = None, column: str = "loss",
                           x: str = "epoch", title: str = "") -> go.Figure:
    """``column`` against ``x`` for the chosen ``runs`` (default: all) of ``logs`` (run name ->
    per-epoch log DataFrame), overlaid; one trace per run."""
    runs = list(logs) if runs is None else list(runs)
    missing = [r for r in runs if r not in logs]
    if missing:
        raise KeyError(f"training_curves_figure: no log for run(s) {missing}; known: {list(logs)}")
    fig = go.Figure()
    for run in runs:
        log = logs[run]
        if column not in log.columns or x not in log.columns:
            raise KeyError(f"training_curves_figure: the log of {run!r} has no {column!r} or {x!r}; "
                           f"columns: {list(log.columns)}")
        part = log[[x, column]].dropna()
        fig.add_trace(go.Scatter(x=part[x].to_numpy(), y=round_sig(part[column].to_numpy(np.float64)),
                                 mode="lines+markers", name=str(run), marker=dict(size=4)))
    fig.update_layout(title=dict(text=title or f"{column} per {x}", font_size=13), xaxis_title=x, yaxis_title=column,
                      height=380, autosize=True, margin=dict(l=10, r=10, t=40, b=10))
    return fig


__all__ = [
    "ablation_bar_figure", "ablation_summary", "framed", "rank_list", "rank_list_figure", "training_curves_figure",
    "tsne_embedding", "tsne_figure",
]
