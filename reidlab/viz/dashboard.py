"""What notebooks 04-07 and the ablation dashboard (notebook 11) compute, kept out of their cells.

Notebooks stay narratives; every number they print comes from a function here, tested in
``tests/test_dashboard.py``. Sections:

- **MSRA attribute graph** (notebook 04, MSRA Eq. 1-2): :func:`attribute_table` (predicted vs
  true per attribute), :func:`mask_grid_figure` (all K masks of Eq. 1 over one image),
  :func:`mean_attribute_adjacency` (Eq. 2's ``D^-1/2 S_a D^-1/2`` averaged
  over a set of images), :func:`top_attribute_pairs` (the links the graph makes strongest).
- **MSRA pose pyramid** (notebook 05, MSRA Eq. 3-9): :func:`drop_keypoints`,
  :func:`keypoint_removal_effect` (what removing keypoints changes: nodes present, the feature,
  the FEM gate of Eq. 9), :func:`gate_figure`.
- **Attention vs Grad-CAM** (notebook 06, MBGN Fig. 5): :func:`saliency_maps` (a model's own
  attention, or Grad-CAM when it has none), :func:`saliency_grid_figure` (images x methods,
  occluder outlined), :func:`occluder_share_figure` (the table of
  :func:`reidlab.viz.cam.occluder_share_table` as bars against the mask area).
- **Retrieval** (notebook 07): :func:`test_subset` (the first identities of a test set).
- **Ablation dashboard** (notebook 11, issue 12): :func:`load_batch` (a batch folder's results,
  labels and training logs), :meth:`Batch.model` (a run's checkpoint through
  :func:`reidlab.engine.trainer.load_checkpoint_model`), :class:`RunComparePanel` (two runs,
  one query: their attention maps side by side and their rank-10 lists).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import figures as F
from . import results as R
from .figures import _hide_axes, _image_trace, go, make_subplots, round_sig

try:  # ipywidgets is optional (the notebooks extra); only RunComparePanel needs it
    from . import widgets as W
except ImportError:  # pragma: no cover - depends on the environment
    W = None


# ----------------------------------------------------------------------------- notebook display
def _control_text(control) -> str:
    value = control.value
    return f"{control.description}={list(value) if isinstance(value, tuple) else value!r}"


def show(panel):
    """A panel's live view (its controls above FigureWidgets) for a notebook cell, whose stored
    text form is one short line naming the panel and its controls' values (a plain ``VBox`` would
    store the whole figure data, with random trace uids, as its text form)."""
    if W is None:  # pragma: no cover
        raise ImportError("show needs ipywidgets: pip install -e '.[notebooks]'")
    view = panel.view()
    text = f"<{type(panel).__name__}: {', '.join(_control_text(c) for c in panel._controls)}>"
    return _View(children=view.children, layout=view.layout, text=text)


if W is not None:
    class _View(W.widgets.VBox):
        """A VBox whose repr is a fixed line (what a notebook stores as the output's text/plain)."""

        def __init__(self, text: str, **kwargs):
            super().__init__(**kwargs)
            self._text = text

        def __repr__(self) -> str:
            return self._text


# ----------------------------------------------------------------------------- MSRA attributes (Eq. 1-2)
def attribute_table(explanation, truth=None, index: int = 0) -> pd.DataFrame:
    """Per attribute of image ``index``: the predicted class and its probability (the ARM
    classifiers on the masked features, Eq. 1), the true class (``truth (B, K)``, -1 = unknown)
    and whether they agree. Probabilities rounded to 3 decimals."""
    if explanation.attribute_predictions is None:
        raise ValueError("attribute_table: the explanation has no ARM output (built with use_arm=False?)")
    predicted = explanation.attribute_predictions[index].cpu().numpy()
    probability = [float(p[index].max()) for p in explanation.attribute_probabilities]
    table = pd.DataFrame({"attribute": list(explanation.attribute_names), "predicted": predicted.astype(int),
                          "p": np.round(probability, 3)})
    if truth is not None:
        true = np.asarray(truth[index].cpu() if hasattr(truth, "cpu") else truth[index]).astype(int)
        if len(true) != len(table):
            raise ValueError(f"attribute_table: truth has {len(true)} attributes, the model {len(table)}")
        table["true"] = true
        table["correct"] = np.where(true >= 0, table["predicted"] == true, None)
    return table.set_index("attribute")


def mask_grid_figure(image, masks, names: Sequence[str], index: int = 0, columns: int = 9,
                     title: str = "ARM masks M_k (Eq. 1)") -> go.Figure:
    """All K ARM masks (``MSRAExplanation.attribute_masks``, ``(B, K, h, w)``) of image ``index``
    over the image, in a grid of ``columns`` columns, on one colour scale [0, 1] (the masks are
    sigmoids). Traces: (image, heatmap) per attribute."""
    values = F._pick(F._numpy(masks, "masks"), index, 3, "masks")  # (K, h, w)
    names = list(names)
    if values.shape[0] != len(names):
        raise ValueError(f"mask_grid_figure: {values.shape[0]} masks but {len(names)} names")
    picture = F.to_display_image(F.select_image(image, index))
    rows = math.ceil(len(names) / columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=names, horizontal_spacing=0.01, vertical_spacing=0.06)
    for k, name in enumerate(names):
        r, c = divmod(k, columns)
        fig.add_trace(_image_trace(picture), r + 1, c + 1)
        fig.add_trace(F._heatmap_over_image(values[k], picture.shape, name, opacity=0.55, zmin=0, zmax=1,
                                            showscale=k == 0), r + 1, c + 1)
    _hide_axes(fig)
    fig.update_annotations(font_size=9)
    fig.update_layout(title=dict(text=title, font_size=13), height=70 + 200 * rows, autosize=True,
                      margin=dict(l=5, r=5, t=60, b=5))
    return fig


@torch.no_grad()
def mean_attribute_adjacency(model, records, height: int, width: int, attribute_spec=None,
                             batch_size: int = 32) -> np.ndarray:
    """Eq. 2's normalised adjacency ``D^-1/2 S_a D^-1/2`` ``(K, K)`` averaged over ``records``
    (float64, rounded to 4 significant digits). The model must be an MSRA with ARM."""
    records = list(records)
    if not records:
        raise ValueError("mean_attribute_adjacency: no records given")
    total, count = None, 0
    for start in range(0, len(records), batch_size):
        batch = F.records_batch(records[start:start + batch_size], height, width, attribute_spec)
        explanation = model.explain(batch["image"], batch["keypoints"])
        if explanation.attribute_adjacency is None:
            raise ValueError("mean_attribute_adjacency: the model has no ARM graph (use_arm=False?)")
        adjacency = explanation.attribute_adjacency.double().sum(0).cpu().numpy()  # (K, K)
        total = adjacency if total is None else total + adjacency
        count += len(batch["image"])
    return round_sig(total / count)


def top_attribute_pairs(adjacency, names: Sequence[str], k: int = 10) -> pd.DataFrame:
    """The ``k`` strongest links between two different attributes of a ``(K, K)`` adjacency
    (symmetrised: ``(A + A^T) / 2``), strongest first: columns ``a``, ``b``, ``weight``."""
    matrix = np.asarray(adjacency, np.float64)
    names = list(names)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or len(names) != matrix.shape[0]:
        raise ValueError(f"top_attribute_pairs: need a square (K, K) matrix and K names, got {matrix.shape} "
                         f"and {len(names)} names")
    weights = (matrix + matrix.T) / 2
    rows, cols = np.triu_indices(len(names), k=1)
    order = np.argsort(-weights[rows, cols], kind="stable")[:k]
    return pd.DataFrame({"a": [names[rows[e]] for e in order], "b": [names[cols[e]] for e in order],
                         "weight": round_sig(weights[rows[order], cols[order]], 3)})


# ----------------------------------------------------------------------------- MSRA pose pyramid (Eq. 3-9)
def drop_keypoints(keypoints: torch.Tensor, which: Sequence[int | str]) -> torch.Tensor:
    """A copy of ``keypoints (B, 17, 3)`` with the COCO-17 points ``which`` (indices or names such
    as ``"left_wrist"``) marked missing, ``(-1, -1, 0)``, as a pose annotation without them."""
    from reidlab.data.records import COCO17_NAMES

    if keypoints.dim() != 3 or keypoints.shape[1:] != (len(COCO17_NAMES), 3):
        raise ValueError(f"drop_keypoints: keypoints must be (B, 17, 3), got {tuple(keypoints.shape)}")
    indices = []
    for point in which:
        if isinstance(point, str):
            if point not in COCO17_NAMES:
                raise ValueError(f"drop_keypoints: unknown keypoint {point!r}; names: {', '.join(COCO17_NAMES)}")
            indices.append(COCO17_NAMES.index(point))
        elif 0 <= int(point) < len(COCO17_NAMES):
            indices.append(int(point))
        else:
            raise ValueError(f"drop_keypoints: keypoint index {point} out of range 0..{len(COCO17_NAMES) - 1}")
    out = keypoints.clone()
    out[:, indices, :2] = -1.0
    out[:, indices, 2] = 0.0
    return out


@torch.no_grad()
def keypoint_removal_effect(model, images: torch.Tensor, keypoints: torch.Tensor,
                            which: Sequence[int | str]) -> pd.DataFrame:
    """What removing the keypoints ``which`` changes in an MSRA, per image: the nodes present per
    pyramid level before / after, the cosine between the retrieval features with all and with
    fewer keypoints, and the mean absolute change of the FEM gate (Eq. 9). Rounded to 3 decimals."""
    full = model.explain(images, keypoints)
    fewer = model.explain(images, drop_keypoints(keypoints, which))
    if not full.node_presence:
        raise ValueError("keypoint_removal_effect: the model has no pose pyramid (use_pose=False?)")
    table = pd.DataFrame({"image": np.arange(len(images))})
    for level in ("j1", "j2", "j3"):
        if level in full.node_presence:
            before = full.node_presence[level].sum(1).cpu().numpy().astype(int)
            after = fewer.node_presence[level].sum(1).cpu().numpy().astype(int)
            table[f"{level} nodes"] = [f"{b} -> {a}" for b, a in zip(before, after)]
    cosine = torch.nn.functional.cosine_similarity(full.features.double(), fewer.features.double(), dim=1)
    table["feature cosine"] = np.round(cosine.cpu().numpy(), 3)
    if full.gate is not None:
        table["gate change"] = np.round((full.gate.double() - fewer.gate.double()).abs().mean(1).cpu().numpy(), 3)
    return table.set_index("image")


def gate_figure(gates: Mapping[str, object], bins: int = 20,
                title: str = "FEM gate values (Eq. 9), all images and channels") -> go.Figure:
    """Histograms of FEM gate values (``MSRAExplanation.gate``, ``(B, D)`` in (0, 1)), one trace
    per named model, on shared bins over [0, 1] (counts as % of the values)."""
    if not gates:
        raise ValueError("gate_figure: no gates given")
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = round_sig((edges[:-1] + edges[1:]) / 2)
    fig = go.Figure()
    for name, gate in gates.items():
        values = F._numpy(gate, "gate").astype(np.float64).ravel()
        counts, _ = np.histogram(values, bins=edges)
        fig.add_trace(go.Bar(x=centres, y=round_sig(100 * counts / max(len(values), 1)), name=str(name), opacity=0.7,
                             hovertemplate=f"{name}: %{{y:.3g}}% of values near %{{x}}<extra></extra>"))
    fig.update_layout(barmode="overlay", title=dict(text=title, font_size=13), xaxis_title="gate value",
                      yaxis_title="% of values", height=340, autosize=True, margin=dict(l=10, r=10, t=40, b=10))
    return fig


# ----------------------------------------------------------------------------- attention vs Grad-CAM (MBGN Fig. 5)
def has_attention(model) -> bool:
    """True when the model has its own spatial attention (GSRPA or CBAM-S modules)."""
    attention = getattr(model, "attention", None)
    return isinstance(attention, torch.nn.ModuleDict) and len(attention) > 0


def saliency_maps(model, images: torch.Tensor, source: str = "auto", stage: str | None = None,
                  keypoints: torch.Tensor | None = None) -> tuple[str, np.ndarray]:
    """``(what, maps (B, h, w))`` for ``images``: ``source="attention"`` (the model's own GSRPA /
    CBAM-S map at ``stage``, default the deepest), ``"grad-cam"`` (:func:`reidlab.viz.cam.grad_cam`
    with the own-embedding target) or ``"auto"`` (attention when the model has some, else Grad-CAM).
    ``what`` names the map, e.g. ``"attention layer4"`` or ``"grad-cam"``."""
    from . import cam

    if source not in ("auto", "attention", "grad-cam"):
        raise ValueError(f"saliency_maps: source must be 'auto', 'attention' or 'grad-cam', got {source!r}")
    if source == "auto":
        source = "attention" if has_attention(model) else "grad-cam"
    if source == "attention":
        used, maps = cam.attention_maps(model, images, stage)
        return f"attention {used}", maps.numpy()
    return "grad-cam", cam.grad_cam(model, images, keypoints=keypoints)


def _outline(mask: np.ndarray) -> tuple[list, list]:
    """The boundary pixels of a bool mask ``(H, W)`` as marker coordinates."""
    inside = np.asarray(mask, bool)
    padded = np.pad(inside, 1)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    rows, cols = np.nonzero(inside & ~interior)
    return cols.tolist(), rows.tolist()


def saliency_grid_figure(images, maps: Mapping[str, object], masks: Sequence | None = None,
                         row_labels: Sequence[str] | None = None, title: str = "", max_cells: int = 16) -> go.Figure:
    """Images (rows) x saliency maps (columns): the image, then each named map ``(B, h, w)``
    stretched over it (each map scaled to its own maximum per image, so shapes compare, not
    magnitudes). ``masks``: per image an ``(H, W)`` bool occluder mask or None, drawn as a white
    outline on every panel. Maps with a side over ``max_cells`` (Grad-CAM comes at the image's
    resolution) are block-averaged down (:func:`~reidlab.viz.figures.block_average`) to keep the
    stored figure small. Traces per row: image, then (image, heatmap) per map, + outlines."""
    names = list(maps)
    if not names:
        raise ValueError("saliency_grid_figure: no maps given")
    count = len(images)
    arrays = {n: F._numpy(maps[n], n).astype(np.float64) for n in names}
    for name, array in arrays.items():
        if array.ndim != 3 or array.shape[0] != count:
            raise ValueError(f"saliency_grid_figure: map {name!r} must be (B={count}, h, w), got {array.shape}")
    if masks is not None and len(masks) != count:
        raise ValueError(f"saliency_grid_figure: {len(masks)} masks for {count} images")
    labels = list(row_labels) if row_labels is not None else [f"image {i}" for i in range(count)]
    titles = [f"{labels[r]}" if c == 0 else names[c - 1] if r == 0 else "" for r in range(count)
              for c in range(len(names) + 1)]
    fig = make_subplots(rows=count, cols=len(names) + 1, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.04)
    for r in range(count):
        picture = F.to_display_image(F.select_image(images, r))
        outline = _outline(masks[r]) if masks is not None and masks[r] is not None else None
        for c in range(len(names) + 1):
            fig.add_trace(_image_trace(picture), r + 1, c + 1)
            if c > 0:
                values = F.block_average(arrays[names[c - 1]][r], max_cells)
                top = values.max() if values.max() > 0 else 1.0
                fig.add_trace(F._heatmap_over_image(values / top, picture.shape, names[c - 1], opacity=0.55, zmin=0,
                                                    zmax=1, showscale=False), r + 1, c + 1)
            if outline is not None and outline[0]:
                fig.add_trace(go.Scatter(x=outline[0], y=outline[1], mode="markers", hoverinfo="skip",
                                         marker=dict(size=2, color="white"), name="occluder", showlegend=False),
                              r + 1, c + 1)
    _hide_axes(fig)
    fig.update_annotations(font_size=10)
    fig.update_layout(title=dict(text=title, font_size=13) if title else None, height=60 + 230 * count,
                      width=140 * (len(names) + 1) + 40, margin=dict(l=5, r=5, t=50 if title else 30, b=5),
                      showlegend=False)
    return fig


def occluder_share_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Bars of :func:`reidlab.viz.cam.occluder_share_table`: the mean share of each (model, source)
    map inside the occluder masks, in %, with the masks' mean area (the share of a map that ignores
    the occluder) as a grey marker. One bar trace per source, + the area markers."""
    missing = [c for c in ("model", "source", "share", "area") if c not in table.columns]
    if missing:
        raise KeyError(f"occluder_share_figure: the table has no column(s) {missing}")
    fig = go.Figure()
    colours = {"attention": "#4c78a8", "grad-cam": "#f58518"}
    models = list(dict.fromkeys(table["model"]))
    for source, part in table.groupby("source", sort=False):
        fig.add_trace(go.Bar(x=part["model"].tolist(), y=round_sig(100 * part["share"].to_numpy(np.float64)),
                             name=f"{source}: share inside the occluder", marker_color=colours.get(source),
                             hovertemplate=f"%{{x}} {source}: %{{y:.3g}}%<extra></extra>"))
    area = table.groupby("model", sort=False)["area"].first().reindex(models)
    fig.add_trace(go.Scatter(x=models, y=round_sig(100 * area.to_numpy(np.float64)), mode="markers",
                             marker=dict(symbol="line-ew-open", size=40, line=dict(width=3, color="#555")),
                             name="occluder area (a uniform map's share)",
                             hovertemplate="%{x}: mask area %{y:.3g}%<extra></extra>"))
    fig.update_layout(barmode="group", title=dict(text=title or "saliency inside the occluder (%)", font_size=13),
                      yaxis_title="% of the map's mass", height=380, autosize=True,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


# ----------------------------------------------------------------------------- retrieval
def test_subset(split, num_ids: int = 0):
    """``split`` with query and gallery cut to its first ``num_ids`` test identities (sorted ids;
    0 keeps all): a smaller retrieval problem for a quick picture. Train records are kept."""
    from reidlab.data.records import ReIDSplit

    if num_ids < 0:
        raise ValueError(f"test_subset: num_ids must be >= 0, got {num_ids}")
    if num_ids == 0:
        return split
    keep = set(sorted({r.pid for r in split.query})[:num_ids])
    return ReIDSplit(f"{split.name} (first {len(keep)} test ids)", split.train,
                     [r for r in split.query if r.pid in keep], [r for r in split.gallery if r.pid in keep],
                     split.attribute_spec, split.root)


# ----------------------------------------------------------------------------- ablation dashboard (issue 12)
def run_setting(row) -> str:
    """What a run varies, without its seed: the preset's row (or the model) and the parameters the
    run's folder name lists after it (those its batch entry changed), e.g.
    ``"Baseline+GSRPA lr_mult=-attention.-10"``; the bars of the dashboard can group by it."""
    from reidlab.ablation import _slug

    preset = str(row.get("preset") or "")
    name = preset.rsplit("/", 1)[-1] if preset else str(row.get("model") or row.get("run"))
    readable = str(row.get("run") or "").rsplit("_seed", 1)[0]
    prefix = _slug(preset or row.get("model") or "run")
    extra = readable[len(prefix) + 1:] if readable.startswith(prefix + "_") else ""
    return f"{name} {extra}".strip()


def run_label(row) -> str:
    """A short readable name of a run: its setting (:func:`run_setting`) and the seed,
    e.g. ``"Baseline+GSRPA s0"``."""
    name = run_setting(row)
    seed = row.get("seed")
    return f"{name} s{int(seed)}" if seed is not None and not (isinstance(seed, float) and math.isnan(seed)) else name


@dataclass
class Batch:
    """A batch folder read for the dashboard: ``table`` (:func:`reidlab.ablation.collect`, one row
    per run, plus ``label``), ``logs`` (label -> per-epoch log DataFrame of the runs that have one)."""

    folder: Path
    table: pd.DataFrame
    logs: dict[str, pd.DataFrame]
    _models: dict = field(default_factory=dict, repr=False)
    _splits: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> pd.DataFrame:
        """The runs that finished (status ok)."""
        return self.table[self.table["status"] == "ok"]

    @property
    def labels(self) -> list[str]:
        return self.ok["label"].tolist()

    def row(self, label: str) -> pd.Series:
        rows = self.table[self.table["label"] == label]
        if rows.empty:
            raise ValueError(f"batch {self.folder}: no run {label!r}; runs: {', '.join(self.table['label'])}")
        return rows.iloc[0]

    def checkpoint(self, label: str) -> Path:
        """Run ``label``'s checkpoint: the recorded path, or ``checkpoint.pt`` in its folder of this batch."""
        row = self.row(label)
        recorded = Path(str(row["checkpoint"]))
        return recorded if recorded.is_absolute() else self.folder / str(row["run"]) / recorded.name

    def has_checkpoints(self, labels=None) -> bool:
        """Whether every run of ``labels`` (default: all finished runs) has its checkpoint here: a batch
        folder may hold only the runs' records (results, logs), as the one shipped in notebooks/."""
        return all(self.checkpoint(label).is_file() for label in (labels or self.labels))

    def model(self, label: str, device: str = "cpu"):
        """Run ``label``'s trained model (its ``checkpoint.pt``, eval mode) and its TrainConfig; cached."""
        from reidlab.engine.trainer import load_checkpoint_model

        if label not in self._models:
            checkpoint = self.checkpoint(label)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"run {label!r}: no checkpoint at {checkpoint} (did the run finish?)")
            self._models[label] = load_checkpoint_model(checkpoint, device=device, split=self.split(label))
        return self._models[label]

    def split(self, label: str):
        """The dataset run ``label`` was trained and evaluated on (never generated here)."""
        from reidlab.data import load_dataset

        row = self.row(label)
        key = (row["dataset"], row["data_root"])
        if key not in self._splits:
            self._splits[key] = load_dataset(row["dataset"], row["data_root"], generate=False)
        return self._splits[key]


def load_batch(folder: str | Path) -> Batch:
    """A batch folder (``reidlab ablate ... --output-dir FOLDER``) for the dashboard: its results
    table (:func:`reidlab.ablation.collect`, not re-saved; in the order of the batch's grid, from
    ``batch.json``, when present) with a ``label`` per run, and the
    training log of every run that has one. A missing or empty folder is an error naming it."""
    from reidlab.ablation import collect
    from reidlab.engine.trainer import read_log

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"batch folder not found: {folder} (run `reidlab ablate ... --output-dir {folder}` "
                                "or `make ablation-demo` first)")
    table = collect(folder, save=False)
    if table.empty:
        raise ValueError(f"batch folder {folder} holds no runs (no results.json / params.json in its subfolders)")
    order = _batch_order(folder)
    if order:  # the grid's order (the paper's rows), not the folders' alphabetical one
        rank = {name: k for k, name in enumerate(order)}
        table = table.assign(_order=[rank.get(run, len(rank)) for run in table["run"]])
        table = table.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
    table["setting"] = [run_setting(row) for _, row in table.iterrows()]
    table["label"] = [run_label(row) for _, row in table.iterrows()]
    duplicated = table["label"].duplicated(keep=False)
    table.loc[duplicated, "label"] = table.loc[duplicated, "label"] + " (" + table.loc[duplicated, "run"] + ")"
    logs = {}
    for _, row in table.iterrows():
        if Path(row["log"]).is_file():
            log = read_log(Path(row["run_dir"]))
            if len(log):
                logs[row["label"]] = log
    return Batch(folder, table, logs)


def _batch_order(folder: Path) -> list[str]:
    """The run names in the order :func:`reidlab.ablation.run_batch` listed them (``batch.json``)."""
    import json

    try:
        return [run["name"] for run in json.loads((folder / "batch.json").read_text())["runs"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def default_pair(batch: Batch) -> tuple[str, str]:
    """Two runs to compare by default: the first finished run and the first one with another preset
    (the first two finished runs when every run has the same preset)."""
    ok = batch.ok
    if len(ok) < 2:
        raise ValueError(f"batch {batch.folder}: need two finished runs to compare, have {len(ok)}")
    first = ok.iloc[0]
    other = ok[ok["preset"] != first["preset"]]
    second = other.iloc[0] if len(other) else ok.iloc[1]
    return first["label"], second["label"]


class _RunData:
    """One run's model on its test set: features and distances computed once."""

    def __init__(self, batch: Batch, label: str, progress: bool = False):
        from reidlab.engine.evaluate import evaluate

        self.model, self.cfg = batch.model(label)
        self.split = batch.split(label)
        result = evaluate(self.model, self.split, self.cfg.height, self.cfg.width, batch_size=64, device="cpu",
                          progress=progress, return_features=True)
        self.distances = result["distmat"]
        self.metrics = {k: float(result[k]) for k in ("rank1", "mAP")}


class RunComparePanel(W.Panel if W is not None else object):
    """Two runs of a batch and one query (issue 12): the query with each run's attention map
    (GSRPA / CBAM-S, or Grad-CAM for a run without attention) side by side, and each run's
    rank-``k`` list for that query (green = same identity). Pick the runs and the query.
    Figures: the maps, run A's list, run B's list. Both runs must share their test set."""

    def __init__(self, batch: Batch, runs: tuple[str, str] | None = None, query: int = 0, k: int = 10):
        if W is None:  # pragma: no cover
            raise ImportError("RunComparePanel needs ipywidgets: pip install -e '.[notebooks]'")
        super().__init__()
        self.batch, self.k = batch, k
        self._data: dict[str, _RunData] = {}
        first, second = runs if runs is not None else default_pair(batch)
        labels = batch.labels
        for label in (first, second):
            if label not in labels:
                raise ValueError(f"RunComparePanel: {label!r} is not a finished run of {batch.folder}; "
                                 f"runs: {', '.join(labels)}")
        self.run_a = W.choice_picker(labels, "run A", first)
        self.run_b = W.choice_picker(labels, "run B", second)
        count = len(self.data(first).split.query)
        self.query = W.image_picker(count, "query")
        self.query.value = int(np.clip(query, 0, count - 1))
        self._start(self.run_a, self.run_b, self.query)

    def data(self, label: str) -> _RunData:
        if label not in self._data:
            self._data[label] = _RunData(self.batch, label)
        return self._data[label]

    def query_record(self):
        return self.data(self.run_a.value).split.query[self.query.value]

    def build(self) -> tuple[go.Figure, ...]:
        a, b = self.data(self.run_a.value), self.data(self.run_b.value)
        if len(a.split.query) != len(b.split.query) or len(a.split.gallery) != len(b.split.gallery):
            raise ValueError("RunComparePanel: the two runs were evaluated on different test sets")
        q = self.query.value
        record = a.split.query[q]
        batch = F.records_batch([record], a.cfg.height, a.cfg.width)
        maps = {}
        for side, label, data in (("A", self.run_a.value, a), ("B", self.run_b.value, b)):
            what, saliency = saliency_maps(data.model, batch["image"])
            maps[f"{side}: {label}<br>{what}"] = saliency
        mask = None
        if record.extra.get("mask_path"):
            from .cam import load_mask

            mask = [load_mask(record, (a.cfg.height, a.cfg.width))]
        attention = saliency_grid_figure(batch["image"], maps, mask, [f"query {q}: id {record.pid}"],
                                         title="the same query through both runs")
        gallery = [r.path for r in a.split.gallery]
        ids = ([r.pid for r in a.split.query], [r.camid for r in a.split.query],
               [r.pid for r in a.split.gallery], [r.camid for r in a.split.gallery])
        lists = []
        for side, label, data in (("A", self.run_a.value, a), ("B", self.run_b.value, b)):
            ranking = R.rank_list(data.distances, q, *ids, k=self.k)
            figure = R.rank_list_figure(record.path, gallery, ranking, query_label=f"{side}: {label}")
            hits = int(ranking["match"].sum())
            figure.update_layout(title=dict(text=f"run {side}, {label}: {hits} of the top {len(ranking)} are the "
                                                 f"query's identity (rank-1 of the run {100 * data.metrics['rank1']:.1f}%)",
                                            font_size=12), margin=dict(t=60))
            lists.append(figure)
        return (attention, *lists)

    def view(self):
        """The controls above the live figures, stacked (a rank list is as wide as the page)."""
        if not self.live:
            self.live = [go.FigureWidget(figure) for figure in self.figures]
        return W.widgets.VBox([W.widgets.HBox(self._controls), *self.live])


__all__ = [
    "Batch", "RunComparePanel", "attribute_table", "default_pair", "drop_keypoints", "gate_figure", "has_attention",
    "keypoint_removal_effect", "load_batch", "mask_grid_figure", "mean_attribute_adjacency", "occluder_share_figure", "run_label", "run_setting",
    "saliency_grid_figure", "saliency_maps", "show", "test_subset", "top_attribute_pairs",
]
