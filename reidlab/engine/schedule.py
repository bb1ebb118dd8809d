"""Per-epoch learning-rate schedules and the optimiser, from a TrainConfig.

- ``"mbgn"`` (MBGN Sec. 4.2): lr constant for the first ``constant_epochs`` (40)
  epochs, then multiplied by ``decay`` (0.98) after every further epoch.
  Read as: epoch e (0-based) trains at ``lr * decay ** max(0, e - constant_epochs + 1)``.
- ``"cosine"``: cosine from lr to 0 over the epochs after the warm-up.
- ``"step"``: ``lr * step_gamma ** (number of step_epochs <= e)`` (MSRA Sec. 4.2:
  0.01, then 0.001 for the last part: ``step_epochs=(E - last,)``, ``step_gamma=0.1``).
- ``"constant"``.
Any schedule takes a linear warm-up over ``warmup_epochs``.
"""
from __future__ import annotations

import math
from bisect import bisect_right

import torch


class EpochLR:
    """Picklable lr factor per epoch (a LambdaLR callable, so scheduler state saves with it)."""

    def __init__(self, schedule: str, epochs: int, constant_epochs: int = 40, decay: float = 0.98,
                 warmup_epochs: int = 0, step_epochs: tuple[int, ...] = (), step_gamma: float = 0.1):
        self.schedule = schedule
        self.epochs = epochs
        self.constant_epochs = constant_epochs
        self.decay = decay
        self.warmup_epochs = warmup_epochs
        self.step_epochs = tuple(sorted(step_epochs))
        self.step_gamma = step_gamma

    def __call__(self, epoch: int) -> float:
        warm = 1.0
        if epoch < self.warmup_epochs:
            warm = (epoch + 1) / self.warmup_epochs
        if self.schedule == "mbgn":
            return warm * self.decay ** max(0, epoch - self.constant_epochs + 1)
        if self.schedule == "cosine":
            span = max(1, self.epochs - self.warmup_epochs)
            progress = min(1.0, max(0, epoch - self.warmup_epochs) / span)
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.schedule == "step":
            return warm * self.step_gamma ** bisect_right(self.step_epochs, epoch)
        if self.schedule == "constant":
            return warm
        raise ValueError(f"unknown schedule {self.schedule!r}; use mbgn, cosine, step or constant")


def lr_factor_fn(cfg) -> EpochLR:
    return EpochLR(cfg.schedule, cfg.epochs, cfg.constant_epochs, cfg.decay, cfg.warmup_epochs,
                   cfg.step_epochs, cfg.step_gamma)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per epoch (``scheduler.step()`` after each epoch)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg))


def lr_table(cfg):
    """The schedule as a pandas DataFrame (epoch, lr): for a plot or a README table."""
    import pandas as pd

    factor = lr_factor_fn(cfg)
    return pd.DataFrame({"epoch": range(cfg.epochs), "lr": [cfg.lr * factor(e) for e in range(cfg.epochs)]})


def parameter_groups(model: torch.nn.Module, lr: float, lr_mult: dict[str, float] | None = None) -> list[dict]:
    """The trainable parameters in optimizer groups: those whose name starts with a prefix of
    ``lr_mult`` get ``lr * lr_mult[prefix]`` (first match wins), the rest ``lr``.

    This is how modules added fresh on a pretrained backbone get their own rate, as RGA-style
    attention is often trained (e.g. ``{"attention.": 10}`` for MBGN's GSRPA / CBAM-S)."""
    lr_mult = dict(lr_mult or {})
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups: dict[str, list] = {prefix: [] for prefix in lr_mult}
    rest = []
    for name, param in named:
        prefix = next((q for q in lr_mult if name.startswith(q)), None)
        (groups[prefix] if prefix is not None else rest).append(param)
    unused = [q for q, params in groups.items() if not params]
    if unused:
        raise ValueError(f"TrainConfig.lr_mult: no trainable parameter name starts with {unused} "
                         f"(names look like {[n for n, _ in named[:3]]})")
    out = [{"params": rest, "lr": lr}] if rest else []
    out += [{"params": params, "lr": lr * float(lr_mult[prefix]), "name": prefix} for prefix, params in groups.items()]
    return out


def build_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    """Adam (MBGN: betas 0.9/0.999), AdamW or SGD over the trainable parameters
    (with ``cfg.lr_mult``: per-prefix learning-rate multipliers, :func:`parameter_groups`)."""
    params = parameter_groups(model, cfg.lr, getattr(cfg, "lr_mult", None))
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    raise ValueError(f"TrainConfig.optimizer: unknown {cfg.optimizer!r}; use adam, adamw or sgd")
