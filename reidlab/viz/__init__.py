"""Visualisation: plotly figure builders over what the rest of reidlab produces.

Imported only explicitly (``from reidlab import viz`` / ``import reidlab.viz``): it needs
plotly (the ``notebooks`` extra), which ``import reidlab`` never pulls in. Data flows one way:
``viz`` reads records, explanations (``MBGN.explain``, ``MSRA.explain``) and result dicts;
nothing in data / models / engine imports it.

Modules: :mod:`~reidlab.viz.figures` (plotly builders, re-exported here),
:mod:`~reidlab.viz.widgets` (ipywidgets panels over them: ``from reidlab.viz import widgets``),
:mod:`~reidlab.viz.cam` (Grad-CAM for embedding models and the attention share inside occluder
masks; needs the ``grad-cam`` package), :mod:`~reidlab.viz.results` (retrieval lists, t-SNE,
ablation bars and training curves).
"""
from __future__ import annotations

from . import figures, results
from .figures import *  # noqa: F401,F403 - the builders, listed in figures.__all__
from .results import *  # noqa: F401,F403


def setup_notebook(renderer: str = "plotly_mimetype") -> str:
    """Make plotly figures render as plotly's JSON mime bundle only (JupyterLab, Notebook 7 and
    VS Code draw it with their plotly extension). The default in a kernel also embeds the 3.5 MB
    plotly.js in the first output, which would bloat every stored notebook. Returns the renderer."""
    import plotly.io as pio

    pio.renderers.default = renderer
    return renderer


__all__ = [*figures.__all__, *results.__all__, "setup_notebook"]
