"""Models: one registry, one builder (timm-style), every paper model and baseline by name.

    >>> from reidlab.models import build_model
    >>> model = build_model("bnneck", num_classes=751, depth=18)

Output convention (every registered model follows it, the engine relies on it):
``model(images, keypoints=None)`` returns a ``dict``:

- ``"features"``: ``(B, D)`` the embedding used for retrieval at test time
  (always present, in train and eval mode).
- in training mode also the tensors the model's loss terms read, each a list of
  tensors so that multi-branch models feed several heads to one term:
  ``"logits"`` (list of ``(B, num_classes)``), ``"triplet"`` (list of ``(B, d)``),
  and, for attribute models, ``"attribute_logits"`` (list of ``(B, C_k)``, one per attribute).

``model.loss_terms`` (a tuple of :class:`reidlab.losses.LossTerm`) declares which
output feeds which loss and with what weight: the paper's total loss, in one place.
``model.requires`` names the batch fields the model needs besides images
(``{"keypoints"}`` for MSRA), so a trainer or a notebook can pass them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch.nn as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: make ``build_model(name, **cfg)`` call the decorated builder."""

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block in eval mode and restore the module's previous mode after (``explain()``)."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def _load_builtin_models() -> None:
    # Imported for their @register_model side effect; kept lazy so that a broken
    # optional model never stops `import reidlab`.
    from reidlab.models import baselines, mbgn, msra  # noqa: F401


def list_models() -> list[str]:
    _load_builtin_models()
    return sorted(_REGISTRY)


def build_model(name: str, **cfg) -> nn.Module:
    """Build a registered model by name; ``cfg`` goes to its builder as keyword arguments."""
    _load_builtin_models()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)
