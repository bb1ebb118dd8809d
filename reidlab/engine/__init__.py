"""Engine: the training loop, feature extraction, metrics, re-ranking, DDP helpers.

- :mod:`reidlab.engine.trainer`: ``train(cfg)``, ``Trainer``, ``read_log``, ``load_checkpoint_model``
- :mod:`reidlab.engine.evaluate`: ``extract_features``, ``evaluate``, ``results_frame``
- :mod:`reidlab.engine.metrics`: ``evaluate_ranking`` (CMC, mAP, mINP)
- :mod:`reidlab.engine.distance`: ``pairwise_distance``; :mod:`reidlab.engine.rerank`: ``re_ranking``
- :mod:`reidlab.engine.schedule`, :mod:`reidlab.engine.distributed`, :mod:`reidlab.engine.commands`

Names are imported lazily (``from reidlab.engine import train``), so importing
the package costs nothing and a missing optional piece fails only when used.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "train": "reidlab.engine.trainer",
    "Trainer": "reidlab.engine.trainer",
    "TrainResult": "reidlab.engine.trainer",
    "NonFiniteLossError": "reidlab.engine.trainer",
    "read_log": "reidlab.engine.trainer",
    "load_checkpoint_model": "reidlab.engine.trainer",
    "extract_features": "reidlab.engine.evaluate",
    "evaluate": "reidlab.engine.evaluate",
    "results_frame": "reidlab.engine.evaluate",
    "chance_level": "reidlab.engine.evaluate",
    "attribute_accuracy": "reidlab.engine.evaluate",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reidlab.engine' has no attribute {name!r}")
