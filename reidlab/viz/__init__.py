"""Visualisation: plotly figure builders over what the rest of reidlab produces.

Imported only explicitly (``from reidlab import viz`` / ``import reidlab.viz``): it needs
plotly (the ``notebooks`` extra), which ``import reidlab`` never pulls in. Data flows one way:
``viz`` reads records, explanations (``MBGN.explain``, ``MSRA.explain``) and result dicts;
nothing in data / models / engine imports it.
"""
from __future__ import annotations

from .figures import (
    COCO17_SKELETON,
    aabs_planes_figure,
    attribute_graph_figure,
    block_average,
    cmc_curve,
    compare_with_paper,
    decode_data_uri,
    gsrpa_figure,
    image_data_uri,
    image_feature_map,
    metrics_bar,
    plane_rows,
    pose_pyramid_figure,
    record_image,
    records_batch,
    sample_grid,
    structure_labels,
    structure_similarity_figure,
    tint_mask,
    to_display_image,
)


def setup_notebook(renderer: str = "plotly_mimetype") -> str:
    """Make plotly figures render as plotly's JSON mime bundle only (JupyterLab, Notebook 7 and
    VS Code draw it with their plotly extension). The default in a kernel also embeds the 3.5 MB
    plotly.js in the first output, which would bloat every stored notebook. Returns the renderer."""
    import plotly.io as pio

    pio.renderers.default = renderer
    return renderer


__all__ = [
    "COCO17_SKELETON", "aabs_planes_figure", "attribute_graph_figure", "block_average", "cmc_curve",
    "compare_with_paper", "decode_data_uri", "gsrpa_figure", "image_data_uri", "image_feature_map", "metrics_bar",
    "plane_rows", "pose_pyramid_figure", "record_image", "records_batch", "sample_grid", "setup_notebook",
    "structure_labels", "structure_similarity_figure", "tint_mask", "to_display_image",
]
