"""ipywidgets panels over the figure builders: pick an image, a pixel, a stage, a repetition, a
pyramid level, a model or runs, and the figure is rebuilt.

Every panel is a small class: its controls are attributes (``panel.image``, ``panel.stage``, ...,
plain ipywidgets), :meth:`Panel.refresh` rebuilds the figures from the controls' values, and
:meth:`Panel.view` lays out the controls above live ``plotly.graph_objects.FigureWidget`` copies.
``panel.figure`` (and ``panel.figures``) are plain ``go.Figure`` objects rebuilt on every change:
a notebook displays one after the view so that its stored output shows a static picture to readers
without a kernel (a plain figure carries no random trace uid; a FigureWidget does). The logic
runs without a browser: a test sets ``panel.image.value = 3`` and reads ``panel.figure``.

Panels: :class:`AABSPanel` (image, repetition; Algorithm 1's cosines per plane),
:class:`GSRPAPanel` (image, stage, pixel by sliders or a click; relation row/column, Eq. 4-5),
:class:`AttributeGraphPanel` (MSRA ARM masks and graph), :class:`PosePyramidPanel` (levels and
the cross-layer dependency as a bipartite graph), :class:`RetrievalPanel` (rank-10 lists),
:class:`AblationPanel` (issue 12's dashboard: metric, grouping, runs) and :class:`ModelPanel`
(any figure per model or run, picked by name).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

try:  # ipywidgets belongs to the optional "notebooks" extra, like plotly
    import ipywidgets as widgets
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("reidlab.viz.widgets needs ipywidgets: pip install -e '.[notebooks]'") from error

from . import figures as F
from . import results as R
from .figures import go

LEVEL_ORDER = ("j1", "j2", "j3")


# ----------------------------------------------------------------------------- controls
def image_picker(count: int, description: str = "image") -> widgets.IntSlider:
    """An image index 0..count-1."""
    if count < 1:
        raise ValueError(f"image_picker: need at least one image, got {count}")
    return widgets.IntSlider(value=0, min=0, max=count - 1, description=description, continuous_update=False)


def pixel_picker(height: int, width: int, pixel: tuple[int, int] = (0, 0)) -> tuple[widgets.IntSlider, widgets.IntSlider]:
    """Row and column sliders over an ``height x width`` grid."""
    row = widgets.IntSlider(value=pixel[0], min=0, max=height - 1, description="row", continuous_update=False)
    col = widgets.IntSlider(value=pixel[1], min=0, max=width - 1, description="col", continuous_update=False)
    return row, col


def choice_picker(options: Sequence, description: str, value=None) -> widgets.Dropdown:
    """A dropdown (stage, pyramid level, metric, model, ...)."""
    options = list(options)
    if not options:
        raise ValueError(f"{description} picker: no options")
    return widgets.Dropdown(options=options, value=options[0] if value is None else value, description=description)


def repetition_slider(repetitions: int) -> widgets.IntSlider:
    """Repetition 0..repetitions of AABS."""
    return widgets.IntSlider(value=0, min=0, max=max(repetitions, 0), description="repetition", continuous_update=False)


def run_picker(runs: Sequence[str], selected: Sequence[str] | None = None) -> widgets.SelectMultiple:
    """Several runs at once (the training curves to overlay)."""
    runs = list(runs)
    return widgets.SelectMultiple(options=runs, value=tuple(selected if selected is not None else runs[:2]),
                                  description="runs", rows=min(8, max(2, len(runs))))


def _set_range(slider: widgets.IntSlider, maximum: int) -> None:
    """Change a slider's maximum, keeping its value inside (the value moves first if it must)."""
    maximum = max(int(maximum), 0)
    if slider.value > maximum:
        slider.value = maximum
    slider.max = maximum


# ----------------------------------------------------------------------------- base
class Panel:
    """Controls + figures kept in sync. Subclasses set their controls, then call ``_start(*controls)``,
    and implement :meth:`build` (one figure or a tuple of figures)."""

    def _fit_pixel_pickers(self, h: int, w: int) -> None:
        """Bound the ``row``/``col`` pickers to an h x w map (a new stage), rebuilding once."""
        self._holding = True
        try:
            _set_range(self.row, h - 1)
            _set_range(self.col, w - 1)
        finally:
            self._holding = False

    def __init__(self) -> None:
        self.figures: tuple[go.Figure, ...] = ()
        self.live: list[go.FigureWidget] = []
        self._controls: list[widgets.Widget] = []
        self._holding = False

    @property
    def figure(self) -> go.Figure:
        """The (first) static figure, as the controls now say."""
        return self.figures[0]

    def build(self) -> go.Figure | tuple[go.Figure, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self, *controls: widgets.Widget) -> None:
        self._controls = list(controls)
        for control in controls:
            control.observe(self._changed, names="value")
        self.refresh()

    def _changed(self, _change=None) -> None:
        if not self._holding:
            self.refresh()

    def refresh(self) -> None:
        """Rebuild the static figures and copy them into the live FigureWidgets (if shown)."""
        built = self.build()
        self.figures = built if isinstance(built, tuple) else (built,)
        for live, figure in zip(self.live, self.figures):
            self._copy(figure, live)

    @staticmethod
    def _copy(figure: go.Figure, live: go.FigureWidget) -> None:
        live.data = ()
        live.add_traces(list(figure.data))
        live.layout = figure.layout

    def view(self) -> widgets.VBox:
        """The controls above live copies of the figures (a FigureWidget each), for a notebook."""
        if not self.live:
            self.live = [go.FigureWidget(figure) for figure in self.figures]
            self._connect()
        return widgets.VBox([widgets.HBox(self._controls), widgets.HBox(self.live)])

    def _connect(self) -> None:
        """Hook click handlers on the live figures (subclasses)."""


# ----------------------------------------------------------------------------- MBGN
class AABSPanel(Panel):
    """AABS on a batch: pick an image and a repetition; the planes after it over the image and,
    when the map AABS split is known, the cosines of Algorithm 1 lines 19-20 per plane that
    decided the next move (:func:`~reidlab.viz.figures.aabs_similarities`).

    ``images (B, 3, H, W)``; ``explanation``: an ``MBGNExplanation`` (its ``aabs[partition]`` trace
    and ``local_map``) or give ``trace`` (``AABSResult`` / ``(T + 1, B, n)``) and optionally
    ``feature`` ``(B, C, h, w)`` with ``feature_height``. :meth:`animation` is the played figure.
    """

    def __init__(self, images, explanation=None, *, trace=None, feature=None, feature_height: int | None = None,
                 partition: int = 0, part_names: Sequence[str] | None = None):
        super().__init__()
        if explanation is not None:
            trace, feature = explanation.aabs[partition], explanation.local_map
        if trace is None:
            raise ValueError("AABSPanel: give an MBGNExplanation or a trace")
        if feature_height is None:
            if feature is None:
                raise ValueError("AABSPanel: give feature_height (rows of the map AABS split) or the feature map")
            feature_height = int(feature.shape[2])
        self.images, self.trace, self.feature, self.feature_height = images, trace, feature, feature_height
        self.part_names = part_names
        self._similarities: dict[int, np.ndarray] = {}
        self.image = image_picker(len(images))
        self.repetition = repetition_slider(self.repetitions(0))
        self.image.observe(self._image_changed, names="value")
        self._start(self.image, self.repetition)

    def repetitions(self, index: int) -> int:
        """How many repetitions image ``index`` made."""
        return len(F.aabs_image_steps(self.trace, index)) - 1

    def similarities(self, index: int) -> np.ndarray | None:
        if self.feature is None:
            return None
        if index not in self._similarities:
            self._similarities[index] = F.aabs_similarities(self.feature, self.trace, index)
        return self._similarities[index]

    def _image_changed(self, change) -> None:
        self._holding = True
        try:
            _set_range(self.repetition, self.repetitions(change["new"]))
        finally:
            self._holding = False

    def build(self) -> go.Figure:
        index = self.image.value
        return F.aabs_repetition_figure(self.images, self.trace, self.feature_height, index, self.repetition.value,
                                        self.similarities(index), self.part_names)

    def animation(self) -> go.Figure:
        """The animated figure (slider + play) of the chosen image."""
        return F.aabs_planes_figure(self.images, self.trace, self.feature_height, self.image.value, self.part_names)


class GSRPAPanel(Panel):
    """GSRPA per image, stage and pixel: the attention, the relation matrix (Eq. 2) and the chosen
    pixel's relation row and column over the image (Eq. 4-5).

    ``attention``: stage -> ``GSRPADetails`` (``MBGNExplanation.attention`` or ResNet+GSRPA's
    ``explain()`` dict; an MBGNExplanation is accepted too); stages without a relation matrix
    (CBAM-S) are left out. Pick the pixel with the sliders or by clicking a map or the matrix.
    """

    def __init__(self, images, attention, max_matrix: int = 64):
        super().__init__()
        attention = getattr(attention, "attention", attention)
        self.details = {name: d for name, d in attention.items() if getattr(d, "relation", None) is not None}
        if not self.details:
            raise ValueError("GSRPAPanel: no stage with a GSRPA relation matrix (is the attention CBAM-S?)")
        self.images, self.max_matrix = images, max_matrix
        self.image = image_picker(len(images))
        self.stage = choice_picker(list(self.details), "stage")
        h, w = self.grid()
        self.row, self.col = pixel_picker(h, w, F.gsrpa_pixel(self.details[self.stage.value], 0))
        self.stage.observe(self._stage_changed, names="value")
        self._start(self.image, self.stage, self.row, self.col)

    def grid(self) -> tuple[int, int]:
        """(h, w) of the chosen stage's map."""
        return tuple(int(v) for v in self.details[self.stage.value].attention.shape[-2:])

    def _stage_changed(self, _change) -> None:
        self._fit_pixel_pickers(*self.grid())

    @property
    def pixel(self) -> tuple[int, int]:
        return self.row.value, self.col.value

    def select_pixel(self, row: int, col: int) -> None:
        """Pick a pixel (one rebuild)."""
        h, w = self.grid()
        self._holding = True
        try:
            self.row.value, self.col.value = int(np.clip(row, 0, h - 1)), int(np.clip(col, 0, w - 1))
        finally:
            self._holding = False
        self.refresh()

    def select_at(self, x: float, y: float) -> None:
        """Pick the map cell under image coordinates (x, y) (a click on a map over the image)."""
        picture = F.to_display_image(F.select_image(self.images, self.image.value))
        H, W = picture.shape[:2]
        h, w = self.grid()
        self.select_pixel(int((y + 0.5) * h // H), int((x + 0.5) * w // W))

    def select_relation_index(self, i: int) -> None:
        """Pick pixel ``i`` (row-major), as a click on the relation matrix's row i does."""
        h, w = self.grid()
        self.select_pixel(int(i) // w, int(i) % w)

    def build(self) -> go.Figure:
        return F.gsrpa_figure(self.images, self.details[self.stage.value], self.image.value, self.pixel,
                              self.max_matrix, title=f"stage {self.stage.value}, image {self.image.value}")

    def _connect(self) -> None:
        self.live[0].layout.clickmode = "event"
        self._hook()

    def _hook(self) -> None:
        def on_map(_trace, points, _state):
            if points.xs:
                self.select_at(points.xs[0], points.ys[0])

        def on_matrix(_trace, points, _state):
            if points.ys:
                self.select_relation_index(int(round(points.ys[0])))

        live = self.live[0]
        for k, trace in enumerate(live.data):
            if isinstance(trace, go.Heatmap):
                trace.on_click(on_matrix if trace.name == "relation" else on_map)

    def refresh(self) -> None:
        super().refresh()
        if self.live:  # the live traces were replaced: hook the new ones
            self._hook()


# ----------------------------------------------------------------------------- MSRA
class AttributeGraphPanel(Panel):
    """MSRA's attribute relation mining: pick an image and an attribute (its ARM mask, Eq. 1, with
    the predicted / true class) and a layout for the graph (Eq. 2's normalised adjacency).
    ``truth``: ``(B, K)`` true classes (optional). Figures: the mask, the graph."""

    def __init__(self, images, explanation, truth=None, top_edges: int = 30):
        super().__init__()
        if explanation.attribute_masks is None:
            raise ValueError("AttributeGraphPanel: the explanation has no ARM output (built with use_arm=False?)")
        self.images, self.explanation, self.truth, self.top_edges = images, explanation, truth, top_edges
        self.image = image_picker(len(images))
        self.attribute = choice_picker(list(explanation.attribute_names), "attribute")
        self.layout = widgets.ToggleButtons(options=["circle", "heatmap"], value="circle", description="graph")
        self._start(self.image, self.attribute, self.layout)

    def build(self) -> tuple[go.Figure, go.Figure]:
        ex, index = self.explanation, self.image.value
        mask = F.attribute_mask_figure(self.images, ex.attribute_masks, ex.attribute_names, self.attribute.value, index,
                                       ex.attribute_probabilities or None, self.truth)
        graph = F.attribute_graph_figure(ex.attribute_adjacency, ex.attribute_names, index, self.layout.value,
                                         self.top_edges)
        return mask, graph


class PosePyramidPanel(Panel):
    """MSRA's pose pyramid: pick an image and a level; its nodes over the image with the intra-layer
    attention S (Eq. 4, with the static-attention note where it applies), and the cross-layer
    dependency (Eq. 5-7) from that level to the next coarser one as a bipartite graph (for the
    coarsest level: from the finer one into it). Figures: the level, the dependency graph."""

    def __init__(self, images, explanation, top_k: int = 2):
        super().__init__()
        if not explanation.intra_attention:
            raise ValueError("PosePyramidPanel: the explanation has no pose pyramid (use_pose=False?)")
        self.images, self.explanation, self.top_k = images, explanation, top_k
        self.image = image_picker(len(images))
        levels = [level for level in LEVEL_ORDER if level in explanation.intra_attention]
        self.level = choice_picker(levels, "level")
        self._start(self.image, self.level)

    def dependency_key(self) -> str | None:
        level = self.level.value
        for key in self.explanation.cross_dependency:
            if key.startswith(f"{level}->"):
                return key
        return next((key for key in self.explanation.cross_dependency if key.endswith(f"->{level}")), None)

    def build(self) -> tuple[go.Figure, ...]:
        ex, index, level = self.explanation, self.image.value, self.level.value
        pyramid = F.pose_pyramid_figure(self.images, {level: ex.node_positions[level]}, {level: ex.intra_attention[level]},
                                        ex.node_presence, ex.node_names, index)
        key = self.dependency_key()
        if key is None:
            return (pyramid,)
        finer, coarser = key.split("->")
        graph = F.cross_dependency_figure(ex.cross_dependency[key], ex.node_names[finer], ex.node_names[coarser], index,
                                          ex.node_presence.get(finer), ex.node_presence.get(coarser), self.top_k,
                                          title=f"{key}: cross-layer dependency (Eq. 5-7), top {self.top_k}")
        return pyramid, graph


# ----------------------------------------------------------------------------- retrieval, ablations, models
class RetrievalPanel(Panel):
    """Pick a query: its rank-``k`` list with green (same id) / red borders (MBGN Fig. 4).
    ``distances (Q, G)``; ids and cameras as arrays; images as sequences (paths, arrays, tensors)."""

    def __init__(self, query_images, gallery_images, distances, query_pids, query_camids, gallery_pids, gallery_camids,
                 k: int = 10, exclude_same_camera: bool = True):
        super().__init__()
        self.query_images, self.gallery_images, self.distances = query_images, gallery_images, distances
        self.ids = (query_pids, query_camids, gallery_pids, gallery_camids)
        self.k, self.exclude_same_camera = k, exclude_same_camera
        self.query = image_picker(len(query_images), "query")
        self._start(self.query)

    def ranking(self) -> pd.DataFrame:
        return R.rank_list(self.distances, self.query.value, *self.ids, k=self.k,
                           exclude_same_camera=self.exclude_same_camera)

    def build(self) -> go.Figure:
        q = self.query.value
        return R.rank_list_figure(self.query_images[q], self.gallery_images, self.ranking(),
                                  query_label=f"query {q}: id {np.asarray(self.ids[0])[q]}")


class AblationPanel(Panel):
    """Issue 12's dashboard: a metric and a grouping -> bars of mean +- std over seeds with the
    paper's figure beside; chosen runs -> their training curves overlaid.

    ``results``: one row per run (``preset``, ``seed``, metrics, ``paper_<metric>``); ``logs``:
    run name -> per-epoch log DataFrame (``reidlab.engine.read_log``). Figures: bars, curves."""

    def __init__(self, results: pd.DataFrame, logs: Mapping[str, pd.DataFrame] | None = None,
                 metrics: Sequence[str] | None = None, groupings: Sequence[str] | None = None):
        super().__init__()
        if results.empty:
            raise ValueError("AblationPanel: the results table is empty")
        numeric = [c for c in results.columns if pd.api.types.is_numeric_dtype(results[c])]
        metrics = list(metrics) if metrics is not None else \
            [c for c in numeric if not c.startswith("paper_") and c not in ("seed",)]
        groupings = list(groupings) if groupings is not None else \
            [c for c in results.columns if c not in numeric or c == "seed"]
        self.results, self.logs = results, dict(logs or {})
        self.metric = choice_picker(metrics, "metric", "rank1" if "rank1" in metrics else None)
        self.group = choice_picker(groupings, "group by", "preset" if "preset" in groupings else None)
        controls = [self.metric, self.group]
        if self.logs:
            columns = sorted({c for log in self.logs.values() for c in log.columns
                              if c not in ("epoch", "step") and pd.api.types.is_numeric_dtype(log[c])})
            self.runs = run_picker(list(self.logs))
            self.curve = choice_picker(columns, "curve", "loss" if "loss" in columns else None)
            controls += [self.runs, self.curve]
        else:
            self.runs = self.curve = None
        self._start(*controls)

    def summary(self) -> pd.DataFrame:
        return R.ablation_summary(self.results, self.metric.value, self.group.value)

    def build(self) -> tuple[go.Figure, ...]:
        bars = R.ablation_bar_figure(self.results, self.metric.value, self.group.value)
        if self.runs is None:
            return (bars,)
        present = [run for run in self.runs.value if self.curve.value in self.logs[run].columns]
        return bars, R.training_curves_figure(self.logs, present, self.curve.value)


class ModelPanel(Panel):
    """A figure per model or run, picked by name: ``figures`` maps a name to a function
    ``() -> go.Figure`` (called on each pick, e.g. ``lambda: gsrpa_figure(images, explain(m)...)``)."""

    def __init__(self, figures: Mapping[str, Callable[[], go.Figure]], description: str = "model"):
        super().__init__()
        if not figures:
            raise ValueError("ModelPanel: no figures given")
        self.makers = dict(figures)
        self.model = choice_picker(list(self.makers), description)
        self._start(self.model)

    def build(self) -> go.Figure:
        return self.makers[self.model.value]()


__all__ = [
    "AABSPanel", "AblationPanel", "AttributeGraphPanel", "GSRPAPanel", "ModelPanel", "Panel", "PosePyramidPanel",
    "RetrievalPanel", "choice_picker", "image_picker", "pixel_picker", "repetition_slider", "run_picker",
]
