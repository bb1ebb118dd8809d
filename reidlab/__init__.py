"""reidlab: a research workbench for person re-identification.

Two papers, step by step: MBGN (Multiple Biological Granularities Network,
ICMR'22) and MSRA (Multi-level Relation Aware network). The flow is
``reidlab.data`` -> ``reidlab.models`` -> ``reidlab.losses`` -> ``reidlab.engine``;
``import reidlab`` pulls in nothing from the notebook stack (plotly, ipywidgets),
so training runs on a bare GPU machine.
"""
__version__ = "0.1.0"


def build_model(name: str, **cfg):
    """Build a registered model by name (see :mod:`reidlab.models`)."""
    from reidlab.models import build_model as _build

    return _build(name, **cfg)
