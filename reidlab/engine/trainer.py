"""The training loop: one Trainer for CPU, one GPU, or many GPUs / machines (DDP via torchrun).

    >>> from reidlab.config import TrainConfig
    >>> from reidlab.engine.trainer import train
    >>> result = train(TrainConfig(model="bnneck", model_cfg={"depth": 18}, epochs=5))
    >>> result.history            # one row per epoch: losses, lr, images/s, eval metrics

What it does, per epoch: P x K batches from :class:`reidlab.data.sampler.PKSampler`
-> ``model(images, keypoints=...)`` (mixed precision where it helps) -> the model's
declared total loss (``compute_loss(outputs, batch, model.loss_terms)``, MBGN Eq. 8)
-> step -> per-epoch lr schedule. After each epoch rank 0 writes
``output_dir/checkpoint.pt`` atomically *first*, then evaluates (every
``eval_every`` epochs), then appends the epoch's row to ``output_dir/log.jsonl``
(``read_log(output_dir)`` gives the DataFrame): a failing evaluation never costs
the epoch, and ``--resume`` runs the evaluation it missed.

Nothing is lost or overwritten by accident (:mod:`reidlab.engine.checkpoint`):
a folder that holds a run is refused without ``resume`` or ``overwrite``;
checkpoints load with ``weights_only=True``; Ctrl-C and ``time_limit`` stop at a
step boundary with a checkpoint from which ``resume`` continues exactly.

Resuming (``resume=True``) restores model, optimiser, scheduler, grad scaler,
epoch *and step within the epoch*, the python/numpy/torch RNG states and the
sampler's epoch. Each sample's augmentation is seeded by (seed, epoch, step,
position) (:class:`reidlab.data.sampler.SeededBatches`), so on CPU with the same
seed an interrupted run ends with exactly the weights of an uninterrupted one,
whatever the number of data-loader workers (tests/test_trainer.py).

Stops with an error that names the step: a non-finite loss, gradient or weight
(:class:`NonFiniteLossError`, after writing ``output_dir/nonfinite/``: the batch,
the loss parts and the weights before the step) and a diverging loss
(:class:`DivergenceError`).
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from reidlab.progress import tqdm

from reidlab.config import TrainConfig, default_num_workers
from reidlab.engine import distributed as D
from reidlab.engine.checkpoint import (  # noqa: F401 - re-exported: the engine's one place for run files
    CHECKPOINT_NAME, CONFIG_NAME, LOG_NAME, METRICS_NAME, CheckpointError, DiskFullError, RunFolderError,
    FolderLock, atomic_save, atomic_write_text, load_checkpoint, load_model_weights, plain, prepare_run_folder,
    rng_state, set_rng_state,
)
from reidlab.engine.evaluate import evaluate, resolve_device
from reidlab.engine.precision import describe_amp, resolve_amp, use_channels_last  # noqa: F401 - resolve_amp re-exported
from reidlab.engine.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)



class NonFiniteLossError(FloatingPointError):
    """The loss, a gradient or a weight became NaN/inf; the message names the step, the term and the dump folder."""


class DivergenceError(FloatingPointError):
    """The loss grew past ``divergence_factor`` x its first steps' mean: the run is diverging (lr too high?)."""


# TrainConfig fields that belong to one invocation (`--time-limit 30` bounds this call, not the next
# `--resume`): left out of config.json.
INVOCATION_FIELDS = ("time_limit", "resume", "overwrite")
PRECISION_KEY = "precision_used"  # in config.json: "fp32", "bf16", "auto: fp32, this CPU has no native bf16"


class _Stop(Exception):
    """Internal: leave the epoch loop at a step boundary (time limit or Ctrl-C); a checkpoint was written."""

    def __init__(self, reason: str, position: tuple[int, int] | None = None):
        super().__init__(reason)
        self.reason, self.position = reason, position  # (epoch, steps done in it), 1-based epoch


@dataclass
class TrainResult:
    model: nn.Module  # the trained model (not DDP-wrapped), in eval mode
    history: pd.DataFrame  # one row per epoch (read_log)
    metrics: dict | None  # the last evaluation (evaluate_ranking's dict), None if never evaluated
    output_dir: Path
    checkpoint: Path
    status: str = "completed"  # "completed" | "time_limit" | "interrupted" (resume with resume=True)
    stopped_at: tuple[int, int] | None = None  # (epoch, step within it) where a stopped run will continue

    @property
    def completed(self) -> bool:
        return self.status == "completed"


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    import random

    random.seed(seed)


def read_log(output_dir: str | Path) -> pd.DataFrame:
    """The per-epoch log of a run (``output_dir/log.jsonl``) as a DataFrame."""
    path = Path(output_dir) / LOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no training log at {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def _ignore_sigint_in_worker(worker_id: int) -> None:
    """Data-loader workers leave Ctrl-C to the main process, which stops at the next step boundary."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopRequests:
    """Ctrl-C (SIGINT) and the time limit as a flag read at step boundaries; a second Ctrl-C stops at once."""

    def __init__(self, time_limit_min: float | None):
        self.deadline = None if time_limit_min is None else time.monotonic() + 60.0 * time_limit_min
        self.reason: str | None = None
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame):
        if self.reason == "interrupted":  # second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        self.reason = "interrupted"
        print("\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit at once)", flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def poll(self) -> str | None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "time_limit"
        return self.reason


def model_kwargs_for(name: str, split=None, num_classes: int | None = None, input_size: tuple[int, int] | None = None) -> dict:
    """What a registered builder needs from the data and the config: ``num_classes`` and, when its
    signature names them, ``attribute_spec`` (MSRA) and ``input_size`` (models whose layers fix H x W)."""
    from reidlab.models import _REGISTRY, _load_builtin_models

    _load_builtin_models()
    kwargs = {"num_classes": num_classes if num_classes is not None else split.num_train_pids}
    builder = _REGISTRY.get(name)
    params = inspect.signature(builder).parameters if builder is not None else {}
    if "attribute_spec" in params and split is not None:
        kwargs["attribute_spec"] = split.attribute_spec
    if "input_size" in params and input_size is not None:
        kwargs["input_size"] = tuple(input_size)
    return kwargs


def merge_model_kwargs(cfg: TrainConfig, derived: dict) -> dict:
    """``cfg.model_cfg`` plus what the data and the config decide (``num_classes``,
    ``attribute_spec``, ``input_size`` = (height, width)). The input size has one
    source, ``cfg.height``/``cfg.width``: a ``model_cfg`` that disagrees is an error."""
    given = cfg.model_cfg.get("input_size")
    if given is not None and "input_size" in derived and tuple(given) != tuple(derived["input_size"]):
        raise ValueError(
            f"model_cfg input_size {tuple(given)} disagrees with the config's height x width "
            f"{tuple(derived['input_size'])}; set --height/--width instead"
        )
    return {**cfg.model_cfg, **derived}


def _float_outputs(value):
    """Model outputs (dicts / lists / tensors, nested) in float32 for the loss (autocast may give bf16/fp16)."""
    if isinstance(value, dict):
        return {k: _float_outputs(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_float_outputs(v) for v in value]
    if torch.is_tensor(value) and value.is_floating_point():
        return value.float()
    return value


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Builds data, model, optimiser and schedule from a :class:`TrainConfig`; ``fit()`` trains.

    ``split`` and ``model`` may be given (notebooks, tests); otherwise the
    dataset is loaded with ``load_dataset(cfg.dataset, cfg.data_root)`` and the
    model built with ``build_model(cfg.model, num_classes=..., **cfg.model_cfg)``.
    Every option is checked here, before the first step: a bad value never costs
    an epoch.
    """

    def __init__(self, cfg: TrainConfig | dict, split=None, model: nn.Module | None = None,
                 trust_checkpoint: bool = False):
        self.trust_checkpoint = trust_checkpoint  # resume: allow a checkpoint that needs full unpickling
        if isinstance(cfg, dict):
            cfg = TrainConfig.from_dict(cfg)
        self.cfg = cfg = cfg.resolved()
        self.num_workers = default_num_workers() if cfg.num_workers is None else cfg.num_workers
        self.dist = D.init_distributed()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.is_main = self.dist.is_main
        self.output_dir = Path(cfg.output_dir)
        # What a stop message tells the user to run to continue (reidlab pretrain sets its own).
        self.resume_command = f"reidlab train --output-dir {self.output_dir} --resume"
        # One trainer per run folder: the lock is taken before any work and held until fit() ends.
        self.lock = FolderLock(self.output_dir, "run folder")
        if self.is_main:
            self.lock.acquire()
        try:
            self._setup(split, model)
        except BaseException:
            self.lock.release()  # a failed start leaves the folder free (a notebook cell can be run again)
            raise

    def _setup(self, split, model) -> None:
        """The rest of ``__init__``, under the run folder's lock."""
        cfg = self.cfg
        if self.is_main:  # before any work: a run folder is never overwritten by accident
            prepare_run_folder(self.output_dir, resume=cfg.resume, overwrite=cfg.overwrite)
        seed_everything(cfg.seed)  # same on all ranks: same initial model

        if split is None:
            from reidlab.data import load_dataset

            split = load_dataset(cfg.dataset, cfg.data_root)
        if not split.train:
            raise ValueError(f"dataset {split.name!r} has no training images")
        self.split = self._check_images(split)

        if model is None:
            from reidlab.models import build_model

            model = build_model(cfg.model, **merge_model_kwargs(
                cfg, model_kwargs_for(cfg.model, split, input_size=(cfg.height, cfg.width))))
        self.model = model.to(self.device)
        self.loss_terms = self._loss_terms(model)
        self.requires = set(getattr(model, "requires", set()))
        self._check_requirements()

        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.precision = describe_amp(cfg.amp, self.device)  # "fp32", "bf16", "auto: fp32, this CPU has no native bf16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.channels_last = use_channels_last(cfg.channels_last, self.device, self.amp_dtype)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            if cfg.sync_bn:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

        self._build_loader()
        self.start_epoch = 0
        self.start_step = 0  # steps already done in start_epoch (a run stopped mid-epoch)
        self.partial: dict | None = None  # that epoch's running sums
        self.pending_row: dict | None = None  # a checkpointed epoch whose log row (and evaluation) is missing
        self.global_step = 0
        self.loss_reference: float | None = None
        self.last_metrics: dict | None = None
        self.stop_reason: str | None = None
        if self.dist.enabled:  # different augmentation/dropout streams per rank from here on
            seed_everything(cfg.seed + 7919 * self.dist.rank)
        if cfg.resume:
            self._resume()
        if self.is_main:  # what the run is, for --resume: not how this one invocation is bounded
            saved = {k: v for k, v in cfg.to_dict().items() if k not in INVOCATION_FIELDS}
            saved[PRECISION_KEY] = self.precision  # what ran (not a TrainConfig field; --resume ignores it)
            atomic_write_text(json.dumps(saved, indent=2), self.output_dir / CONFIG_NAME)

    # --- construction
    def _check_images(self, split):
        """Decode every image's header once before training (all bad files listed at once), or drop
        them with ``skip_bad_images``. A full decode of every file is ``reidlab.data.verify_images``."""
        from reidlab.data import verify_images

        records = [*split.train, *split.query, *split.gallery]
        bad = verify_images(records, full_decode=False, progress=self.cfg.progress and self.is_main, raise_on_error=False)
        if not bad:
            return split
        listing = "\n".join(f"  {path}: {reason}" for path, reason in bad)
        if not self.cfg.skip_bad_images:
            raise ValueError(f"{len(bad)} unreadable image(s) in {split.name!r}:\n{listing}\n"
                             f"fix or remove them, or pass --skip-bad-images to leave them out")
        bad_paths = {str(path) for path, _ in bad}
        log.warning("--skip-bad-images: leaving out %d unreadable image(s):\n%s", len(bad), listing)
        keep = lambda records: [r for r in records if str(r.path) not in bad_paths]  # noqa: E731
        return replace(split, train=keep(split.train), query=keep(split.query), gallery=keep(split.gallery))

    def _check_requirements(self):
        """A model that needs keypoints or attributes refuses records without them (unless allow_missing)."""
        needed = self.requires & {"keypoints", "attributes"}
        if not needed:
            return
        from reidlab.data.records import check_requirements

        check_requirements(self.split, needed, allow_missing=self.cfg.allow_missing)

    def _loss_terms(self, model):
        terms = tuple(getattr(model, "loss_terms", ()))
        if not terms:
            raise ValueError(f"model {type(model).__name__} declares no loss_terms")
        cfg = self.cfg
        out = []
        for term in terms:
            if term.kind == "triplet":
                if cfg.margin is not None:
                    term = replace(term, options={**term.options, "margin": cfg.margin})
                if cfg.triplet_weight is not None:
                    term = replace(term, weight=cfg.triplet_weight)
            out.append(term)
        return tuple(out)

    def _build_loader(self):
        from reidlab.data.dataset import ReIDDataset
        from reidlab.data.sampler import PKSampler, SeededBatches
        from reidlab.data.transforms import build_transforms

        cfg = self.cfg
        self.dataset = ReIDDataset(
            self.split.train,
            transform=build_transforms(cfg.height, cfg.width, train=True, **cfg.transform_opts),
            attribute_spec=self.split.attribute_spec,
        )
        pids = [r.pid for r in self.split.train]
        self.sampler = PKSampler(pids, cfg.batch_p, cfg.batch_k, seed=cfg.seed,
                                 rank=self.dist.rank, world_size=self.dist.world_size)
        self.batches = SeededBatches(self.sampler, seed=cfg.seed * 7919 + self.dist.rank)

    def _loader(self, start: int, stop: int):
        """The epoch's batches from step ``start`` to ``stop`` (the sampler's epoch is set by the caller)."""
        self.batches.start, self.batches.stop = start, stop
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.batches, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", worker_init_fn=_ignore_sigint_in_worker,
            persistent_workers=False,
            generator=torch.Generator(),  # its own: starting an epoch must not draw from the global RNG
        )

    def steps_per_epoch(self) -> int:
        steps = len(self.sampler)
        if self.cfg.max_steps_per_epoch:
            steps = min(steps, self.cfg.max_steps_per_epoch)
        if steps == 0:
            raise ValueError(
                f"no full P x K batch: {self.cfg.batch_p} ids x {self.cfg.batch_k} images "
                f"from {self.split.num_train_pids} training ids (lower batch_p)"
            )
        return steps

    # --- checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.output_dir / CHECKPOINT_NAME

    def state_dict(self, epoch: int, step: int = 0, partial: dict | None = None, row: dict | None = None) -> dict:
        """Everything a resume needs, in tensors and plain values (loads with ``weights_only=True``).

        ``epoch``: epochs completed; ``step``: steps done in the next epoch (a mid-epoch stop) with the
        epoch's running sums in ``partial``; ``row``: the last completed epoch's log row, kept until the
        log has it (and its evaluation, if one was due, has run)."""
        return plain({
            "format": 2,
            "epoch": epoch,
            "step_in_epoch": step,
            "partial": partial,
            "pending_row": row,
            "global_step": self.global_step,
            "loss_reference": self.loss_reference,
            "model_name": self.cfg.model,
            "num_classes": getattr(self.model, "num_classes", self.split.num_train_pids),
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "sampler_epoch": epoch,
            "cfg": self.cfg.to_dict(),
            "metrics": {k: v for k, v in (self.last_metrics or {}).items() if k != "cmc"},
        })

    def save_checkpoint(self, epoch: int, step: int = 0, partial: dict | None = None, row: dict | None = None) -> Path | None:
        if not self.is_main:
            return None
        return atomic_save(self.state_dict(epoch, step, partial, row), self.checkpoint_path)

    def _resume(self):
        path = self.checkpoint_path
        if not path.exists():
            log.warning("resume=True but no checkpoint at %s; starting from scratch", path)
            if self.is_main:
                (self.output_dir / LOG_NAME).unlink(missing_ok=True)
            return
        state = load_checkpoint(path, trust=self.trust_checkpoint)
        if state.get("model_name") != self.cfg.model:
            raise CheckpointError(f"{path} holds a {state.get('model_name')!r} model, the config asks for {self.cfg.model!r}")
        load_model_weights(unwrap(self.model), state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.start_step = int(state.get("step_in_epoch") or 0)
        self.partial = state.get("partial")
        self.pending_row = state.get("pending_row")
        self.global_step = int(state["global_step"])
        self.loss_reference = state.get("loss_reference")
        self.sampler.set_epoch(int(state["sampler_epoch"]))
        if not self.dist.enabled:  # other ranks' RNG states are not saved; exact resume is single-process
            set_rng_state(state["rng"])
        self.last_metrics = state.get("metrics") or None
        metrics_path = self.output_dir / METRICS_NAME
        if metrics_path.exists():
            self.last_metrics = json.loads(metrics_path.read_text())
        if self.is_main:  # drop log rows of epochs after the checkpoint (a crash between log and checkpoint)
            log_path = self.output_dir / LOG_NAME
            if log_path.exists():
                lines = [l for l in log_path.read_text().splitlines() if l.strip()]
                keep = [l for l in lines if json.loads(l).get("epoch", 0) <= self.start_epoch]
                atomic_write_text("".join(l + "\n" for l in keep), log_path)
                if self.pending_row and any(json.loads(l).get("epoch") == self.pending_row["epoch"] for l in keep):
                    self.pending_row = None  # its row (and evaluation) made it into the log
        where = f"epoch {self.start_epoch + 1}, step {self.start_step}" if self.start_step else f"epoch {self.start_epoch}"
        log.info("resumed from %s after %s", path, where)

    # --- one step
    def _to_device(self, batch: dict) -> dict:
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, non_blocking=True)
                if key == "image" and self.channels_last:
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def forward_loss(self, batch: dict):
        """The model's total loss on one batch: ``(total, parts)`` (float32)."""
        from reidlab.losses import compute_loss

        extra = {"keypoints": batch["keypoints"]} if "keypoints" in self.requires else {}
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            outputs = self.train_model(batch["image"], **extra)
        return compute_loss(_float_outputs(outputs), batch, self.loss_terms)

    def _snapshot_buffers(self) -> None:
        """Copy the BN running statistics before a forward changes them (for the non-finite dump)."""
        buffers = [b for b in unwrap(self.model).buffers()]
        if getattr(self, "_buffer_snapshot", None) is None or len(self._buffer_snapshot) != len(buffers):
            self._buffer_snapshot = [b.detach().clone() for b in buffers]
            return
        with torch.no_grad():
            for saved, live in zip(self._buffer_snapshot, buffers):
                saved.copy_(live)

    def _weights_before_step(self) -> dict:
        """The model's state before the current step: parameters as they are (the step was not
        taken), buffers from the snapshot taken before the forward."""
        model = unwrap(self.model)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        names = [name for name, _ in model.named_buffers()]
        for name, saved in zip(names, self._buffer_snapshot or []):
            if name in state:
                state[name] = saved.detach().cpu().clone()
        return state

    def _finite_flags(self, total: torch.Tensor) -> torch.Tensor:
        """One boolean tensor: [weights finite (as the previous step left them), loss finite, grads finite].
        Built on the device and read once per step (a single sync, none when check_finite is off)."""
        params = [p for p in self.model.parameters()]
        grads = [p.grad for p in params if p.grad is not None]
        weight_max = torch.stack(torch._foreach_norm([p.detach() for p in params], float("inf")))
        grad_max = torch.stack(torch._foreach_norm(grads, float("inf"))) if grads else weight_max.new_zeros(1)
        return torch.stack([torch.isfinite(weight_max).all(), torch.isfinite(total.detach()).all(),
                            torch.isfinite(grad_max).all()])

    def train_step(self, batch: dict, epoch: int, step: int) -> tuple[float, dict]:
        batch = self._to_device(batch)
        self._snapshot_buffers()
        total, parts = self.forward_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.check_finite:
            if self.scaler.is_enabled():  # fp16: the scaler skips steps with inf grads by design
                self.scaler.unscale_(self.optimizer)
            weights_ok, loss_ok, grads_ok = (bool(v) for v in self._finite_flags(total).tolist())
            if D.any_rank(not (weights_ok and loss_ok and (grads_ok or self.scaler.is_enabled())), self.device):
                self._stop_nonfinite(batch, total, parts, epoch, step, weights_ok, loss_ok, grads_ok)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        loss = float(total.detach())
        self._check_divergence(loss, epoch, step)
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    def _check_divergence(self, loss: float, epoch: int, step: int) -> None:
        factor = self.cfg.divergence_factor
        if factor is None or not math.isfinite(loss):
            return
        if self.loss_reference is None:  # the first step's loss: before any update, whatever the lr
            self.loss_reference = loss
            return
        if loss > factor * max(self.loss_reference, 1e-8):
            raise DivergenceError(
                f"the loss is diverging at epoch {epoch + 1}, step {step} (global step {self.global_step}): "
                f"{loss:.4g} > {factor:g} x {self.loss_reference:.4g} (the first step's loss). "
                f"Lower --lr (now {self.cfg.lr:g}); --divergence-factor sets the bound"
            )

    def _stop_nonfinite(self, batch, total, parts, epoch, step, weights_ok=True, loss_ok=True, grads_ok=True):
        """Write what is needed to look into a non-finite step, then raise naming the step and term."""
        where = f"epoch {epoch + 1}, step {step} (global step {self.global_step})"
        if weights_ok and loss_ok and grads_ok:  # another rank saw it
            raise NonFiniteLossError(f"non-finite loss on another rank at {where}; see its nonfinite/ folder")
        if not weights_ok:  # the previous update overflowed: name that step, not this one
            bad = [n for n, p in unwrap(self.model).named_parameters() if not torch.isfinite(p).all()]
            raise NonFiniteLossError(
                f"the optimizer step of global step {self.global_step - 1} made {len(bad)} weight tensor(s) "
                f"non-finite (e.g. {bad[0]}): the update overflowed (lr {self.cfg.lr:g} too high?). "
                f"The last checkpoint is {self.checkpoint_path}"
            )
        bad = [k for k, v in parts.items() if not torch.isfinite(torch.as_tensor(v)).all()] or ["total"]
        if loss_ok and not grads_ok:
            bad = ["gradients"] + [n for n, p in unwrap(self.model).named_parameters()
                                   if p.grad is not None and not torch.isfinite(p.grad).all()][:3]
        folder = self.output_dir / "nonfinite" / (f"rank{self.dist.rank}" if self.dist.enabled else "")
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "epoch": epoch + 1, "step": step, "global_step": self.global_step,
            "nonfinite_terms": bad,
            "total": float(total.detach()),
            "loss_parts": {k: float(torch.as_tensor(v).detach()) for k, v in parts.items()},
            "index": batch["index"].tolist() if "index" in batch else None,
            "pid": batch["pid"].tolist(),
            "camid": batch["camid"].tolist() if "camid" in batch else None,
            "paths": [str(self.split.train[i].path) for i in batch["index"].tolist()] if "index" in batch else None,
        }
        atomic_write_text(json.dumps(info, indent=2), folder / "nonfinite.json")
        atomic_save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in batch.items()}, folder / "batch.pt")
        atomic_save({"model": self._weights_before_step(), "cfg": self.cfg.to_dict(), **{k: info[k] for k in ("epoch", "step", "global_step")}},
                    folder / "weights_before_step.pt")
        values = ", ".join(f"{k}={info['loss_parts'].get(k, info['total'])}" for k in bad if k in info["loss_parts"] or k == "total")
        raise NonFiniteLossError(
            f"non-finite {'gradients' if loss_ok else 'loss'} at {where}: {values or ', '.join(bad)}. "
            f"The batch (indices, pids), the loss parts and the weights before this step are in {folder}"
        )

    # --- epochs
    def train_one_epoch(self, epoch: int, stops: _StopRequests | None = None) -> dict:
        """One epoch (from ``start_step`` when resuming mid-epoch); its log row. Raises :class:`_Stop`
        after writing a mid-epoch checkpoint when ``stops`` asks for it at a step boundary."""
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        self.train_model.train()
        steps = self.steps_per_epoch()
        first = self.start_step if epoch == self.start_epoch else 0
        partial = self.partial if first else None
        sums: dict[str, float] = defaultdict(float, (partial or {}).get("sums", {}))
        images = int((partial or {}).get("images", 0))
        seconds_before = float((partial or {}).get("seconds", 0.0))
        lr = self.optimizer.param_groups[0]["lr"]
        run_bar = getattr(self, "_run_bar", None)  # fit(): one bar for the whole run, its ETA re-estimated as it goes
        bar = run_bar if run_bar is not None else tqdm(
            total=steps, initial=first, disable=not (cfg.progress and self.is_main), leave=False, unit="step")
        bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}", refresh=False)
        start = time.perf_counter()
        step = first - 1
        for step, batch in enumerate(self._loader(first, steps), start=first):
            loss, parts = self.train_step(batch, epoch, step)
            sums["loss"] += loss
            for key, value in parts.items():
                sums[f"loss/{key}"] += value
            images += batch["image"].shape[0]
            bar.update(1)
            if (step + 1) % max(1, cfg.log_every) == 0 or step + 1 == steps:
                rate = images * self.dist.world_size / (seconds_before + time.perf_counter() - start)
                bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}", img_s=f"{rate:.1f}")
            self._maybe_estimate(epoch, step, steps)
            reason = stops.poll() if stops is not None else None
            if reason and step + 1 < steps:
                if run_bar is None:
                    bar.close()
                done = {"sums": dict(sums), "images": images, "seconds": seconds_before + time.perf_counter() - start}
                self.save_checkpoint(epoch, step + 1, partial=done)
                raise _Stop(reason, (epoch + 1, step + 1))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = seconds_before + time.perf_counter() - start
        if run_bar is None:
            bar.close()
        self.scheduler.step()
        self.start_step, self.partial = 0, None
        row = {"epoch": epoch + 1, "step": self.global_step, "lr": lr, "precision": self.precision}
        row.update({k: v / steps for k, v in sums.items()})
        row.update(images_per_s=images * self.dist.world_size / max(seconds, 1e-9), epoch_s=seconds)
        return row

    def _maybe_estimate(self, epoch: int, step: int, steps: int) -> None:
        """Once per run, after a few steps: one line estimating the time of the whole run."""
        if getattr(self, "_estimated", False) or not self.is_main:
            return
        if not hasattr(self, "_clock"):
            self._clock = (time.perf_counter(), 0)
            return
        started, counted = self._clock
        counted += 1
        self._clock = (started, counted)
        elapsed = time.perf_counter() - started
        if counted < 3 and elapsed < 20:
            return
        per_step = elapsed / counted
        remaining = (steps - step - 1) + (self.cfg.epochs - epoch - 1) * steps
        self._estimated = True
        log.info("about %.1f min of training left (%d steps at %.2f s/step), plus evaluation",
                 remaining * per_step / 60, remaining, per_step)

    def should_evaluate(self, epoch: int) -> bool:
        every = self.cfg.eval_every
        if every < 0:
            return False
        return epoch + 1 == self.cfg.epochs or (every > 0 and (epoch + 1) % every == 0)

    def evaluate(self) -> dict:
        cfg = self.cfg
        return evaluate(unwrap(self.model), self.split, cfg.height, cfg.width, batch_size=cfg.eval_batch_size,
                        flip=cfg.flip_eval, metric=cfg.metric, device=self.device, protocol=cfg.protocol,
                        amp=cfg.amp != "off",  # a float32 run is evaluated in float32
                        num_workers=min(self.num_workers, 4), progress=cfg.progress)

    def _finish_epoch(self, row: dict) -> None:
        """Evaluate if due, then log the row: after the checkpoint, so a failure here loses no training."""
        if self.should_evaluate(row["epoch"] - 1):
            if self.is_main:
                self.last_metrics = self.evaluate()
                row.update({k: float(self.last_metrics[k]) for k in ("rank1", "rank5", "rank10", "mAP", "mINP")
                            if k in self.last_metrics})
                metrics = {k: v for k, v in self.last_metrics.items() if k != "cmc"}
                atomic_write_text(json.dumps(metrics, indent=2, default=float), self.output_dir / METRICS_NAME)
            D.barrier()
        if self.is_main:
            with open(self.output_dir / LOG_NAME, "a") as f:
                f.write(json.dumps(row) + "\n")
            summary = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
            log.info("epoch %d/%d: %s", row["epoch"], self.cfg.epochs, summary)

    def fit(self, until_epoch: int | None = None) -> TrainResult:
        """Train from where the run stands to ``cfg.epochs`` (or stop after ``until_epoch`` epochs).

        Ctrl-C and ``cfg.time_limit`` stop at the next step boundary with a checkpoint; the result's
        ``status`` says so, and ``resume=True`` continues exactly from there."""
        end = self.cfg.epochs if until_epoch is None else min(self.cfg.epochs, until_epoch)
        if self.is_main:
            self.lock.acquire()  # again after an earlier fit() released it
        try:
            return self._fit(end)
        finally:
            self._run_bar = None
            self.lock.release()

    def _fit(self, end: int) -> TrainResult:
        cfg = self.cfg
        status, stopped_at = "completed", None
        if self.pending_row is not None:  # a resumed run whose last epoch was checkpointed but not logged
            self._finish_epoch(self.pending_row)
            self.pending_row = None
        epochs_left = max(0, end - self.start_epoch)
        self._run_bar = tqdm(total=self.steps_per_epoch() * epochs_left, initial=self.start_step if epochs_left else 0,
                             disable=not (cfg.progress and self.is_main), leave=False, unit="step")
        with _StopRequests(cfg.time_limit) as stops, self._run_bar:
            try:
                for epoch in range(self.start_epoch, end):
                    row = self.train_one_epoch(epoch, stops)
                    self.save_checkpoint(epoch + 1, row=row)  # first: an evaluation failure loses nothing
                    self.start_epoch = epoch + 1
                    if stops.poll() and epoch + 1 < end:
                        if not self.should_evaluate(epoch):  # a due evaluation runs at the resume instead
                            self._finish_epoch(row)
                        stopped_at = (epoch + 2, 0)
                        raise _Stop(stops.reason)
                    self._finish_epoch(row)
            except _Stop as stop:
                status, stopped_at = stop.reason, stop.position or stopped_at
                self._say_stopped(status, stopped_at)
        D.barrier()
        self.model.eval()
        history = read_log(self.output_dir) if self.is_main and (self.output_dir / LOG_NAME).exists() else pd.DataFrame()
        return TrainResult(unwrap(self.model), history, self.last_metrics, self.output_dir, self.checkpoint_path,
                           status=status, stopped_at=stopped_at)

    def _say_stopped(self, reason: str, position: tuple[int, int]) -> None:
        if not self.is_main:
            return
        why = "time limit reached" if reason == "time_limit" else "interrupted (Ctrl-C)"
        epoch, step = position  # the next step to run: epoch counted from 1, step from 0
        steps = self.steps_per_epoch()
        done, total = (epoch - 1) * steps + step, self.cfg.epochs * steps
        print(f"{why}: stopped after {done:,} of {total:,} steps (epoch {epoch}, step {step}); "
              f"checkpoint {self.checkpoint_path}\n"
              f"continue with: {self.resume_command}\n"
              f"metrics of what was trained so far: reidlab evaluate --checkpoint {self.output_dir}", flush=True)


def train(cfg: TrainConfig | dict, split=None, model: nn.Module | None = None) -> TrainResult:
    """Train a model as ``cfg`` says; see :class:`Trainer`."""
    return Trainer(cfg, split=split, model=model).fit()


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu", split=None,
                          trust: bool = False) -> tuple[nn.Module, TrainConfig]:
    """The model of a training checkpoint (weights loaded, eval mode) and the config it was trained with.

    Loads with ``weights_only=True`` (``trust=True`` allows older or foreign pickles, see
    :func:`reidlab.engine.checkpoint.load_checkpoint`); a file that does not fit is a :class:`CheckpointError`."""
    from reidlab.models import build_model

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    state = load_checkpoint(path, trust=trust)
    try:
        cfg = TrainConfig.from_dict({k: v for k, v in state["cfg"].items() if k in TrainConfig.field_names()})
    except ValueError as error:
        raise CheckpointError(f"{path}: its stored config is not valid here: {error}") from error
    kwargs = model_kwargs_for(cfg.model, split, num_classes=state["num_classes"], input_size=(cfg.height, cfg.width))
    model = build_model(cfg.model, **{**merge_model_kwargs(cfg, kwargs), "pretrained": False})
    load_model_weights(model, state["model"], path)
    return model.to(resolve_device(device)).eval(), cfg
