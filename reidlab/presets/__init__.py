"""Named presets: one per row of the papers' tables, buildable by name.

A :class:`Preset` is what a notebook parameter or an ablation batch names: the
model and its configuration, the training settings the paper states, and the
paper's reported figures for that row (reference values for comparison plots).

    >>> from reidlab.presets import get_preset, list_presets
    >>> p = get_preset("mbgn/table2/MBGN")
    >>> model = p.build(num_classes=751)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Preset:
    name: str  # "paper/table/row", e.g. "mbgn/table2/Baseline+GSRPA"
    model: str  # registered model name
    model_cfg: dict = field(default_factory=dict)
    train_cfg: dict = field(default_factory=dict)  # TrainConfig overrides (lr, schedule, ...)
    paper: str = ""  # "mbgn" or "msra"
    table: str = ""  # "Table 2", "Fig. 3", ...
    row: str = ""
    reported: dict = field(default_factory=dict)  # e.g. {"market1501": {"rank1": 96.5, "mAP": 92.3}}
    notes: str = ""

    def build(self, **overrides):
        from reidlab.models import build_model

        return build_model(self.model, **{**self.model_cfg, **overrides})


_PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} is registered twice")
    _PRESETS[preset.name] = preset
    return preset


def _load_builtin_presets() -> None:
    from reidlab.presets import baselines, mbgn, msra  # noqa: F401


def get_preset(name: str) -> Preset:
    _load_builtin_presets()
    if name not in _PRESETS:
        from reidlab.models import UnknownNameError

        raise UnknownNameError(f"unknown preset {name!r}; `reidlab train --list-presets` or "
                               "reidlab.presets.list_presets() lists them")
    return _PRESETS[name]


def list_presets(paper: str | None = None, table: str | None = None) -> list[str]:
    _load_builtin_presets()
    return [n for n, p in _PRESETS.items() if (paper is None or p.paper == paper) and (table is None or p.table == table)]


def presets_table(paper: str | None = None) -> pd.DataFrame:
    """All presets as a DataFrame with the paper's reported figures as columns."""
    _load_builtin_presets()
    rows = []
    for name in list_presets(paper):
        p = _PRESETS[name]
        row = {"preset": name, "paper": p.paper, "table": p.table, "row": p.row, "model": p.model}
        for dataset, figures in p.reported.items():
            for metric, value in figures.items():
                row[f"{dataset}/{metric}"] = value
        rows.append(row)
    return pd.DataFrame(rows)
