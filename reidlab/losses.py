"""Losses: identity cross-entropy (MBGN Eq. 9), batch-hard triplet (MBGN Eq. 10),
attribute losses (MSRA Sec. 3.1), and the declared total loss of a model (MBGN Eq. 8).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LossTerm:
    """One term of a model's total loss: ``weight * kind(outputs[output], batch)``.

    ``kind`` is ``"id"`` (cross-entropy against ``batch["pid"]``), ``"triplet"``
    (batch-hard against ``batch["pid"]``) or ``"attribute"`` (against
    ``batch["attributes"]``). ``outputs[output]`` is a list of tensors; the term is
    the mean over that list. ``options`` go to the loss (``margin``, ``soft_margin``,
    ``label_smoothing``, ``num_classes`` per attribute, ...).
    """

    kind: str
    output: str
    weight: float = 1.0
    options: dict = field(default_factory=dict)
    name: str | None = None  # shown in logs; defaults to kind

    @property
    def label(self) -> str:
        return self.name or self.kind
