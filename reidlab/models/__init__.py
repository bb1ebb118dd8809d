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

import re

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


class UnknownNameError(KeyError, ValueError):
    """A model, preset or option name that does not exist: a lookup (KeyError) and bad input
    (ValueError, which the command line reports in one line)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def model_options(name: str) -> list[str]:
    """The keyword options the builder of model ``name`` takes (its ``model_cfg`` keys)."""
    import inspect

    _load_builtin_models()
    builder = _REGISTRY[name]
    target = builder.__init__ if inspect.isclass(builder) else builder
    params = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params) and inspect.isfunction(builder):
        # a builder that forwards **cfg to the class it returns: list that class's options too
        returned = builder.__annotations__.get("return")
        forwarded = builder.__globals__.get(returned) if isinstance(returned, str) else returned
        if inspect.isclass(forwarded):
            params = [*params, *inspect.signature(forwarded.__init__).parameters.values()]
    return sorted({p.name for p in params if p.name not in ("self", "cfg", "kwargs") and p.kind is not p.VAR_KEYWORD
                   and p.kind is not p.VAR_POSITIONAL})


def build_model(name: str, **cfg) -> nn.Module:
    """Build a registered model by name; ``cfg`` goes to its builder as keyword arguments.
    An unknown name or option is an :class:`UnknownNameError` listing what exists."""
    _load_builtin_models()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**cfg)
    except TypeError as error:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(error))
        if unknown is None:
            raise
        raise UnknownNameError(f"model {name!r} has no option {unknown.group(1)!r} (a model_cfg key); its options: "
                               f"{', '.join(model_options(name))}") from None
