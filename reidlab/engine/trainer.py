"""The training loop: one Trainer for CPU, one GPU, or many GPUs / machines (DDP via torchrun).

    >>> from reidlab.config import TrainConfig
    >>> from reidlab.engine.trainer import train
    >>> result = train(TrainConfig(model="bnneck", model_cfg={"depth": 18}, epochs=5))
    >>> result.history            # one row per epoch: losses, lr, images/s, eval metrics

What it does, per epoch: P x K batches from :class:`reidlab.data.sampler.PKSampler`
-> ``model(images, keypoints=...)`` (mixed precision on CUDA) -> the model's
declared total loss (``compute_loss(outputs, batch, model.loss_terms)``, MBGN Eq. 8)
-> step -> per-epoch lr schedule. After each epoch rank 0 appends a row to
``output_dir/log.jsonl`` (``read_log(output_dir)`` gives the DataFrame), evaluates
every ``eval_every`` epochs, and writes ``output_dir/checkpoint.pt`` atomically.

Resuming (``resume=True``) restores model, optimiser, scheduler, grad scaler,
epoch, the python/numpy/torch RNG states and the sampler's epoch, so on CPU
with the same seed an interrupted run ends with exactly the weights of an
uninterrupted one (tests/test_trainer.py). Data-loader workers are seeded from
(seed, epoch, rank) and are not persistent, for the same reason.

A non-finite loss stops the run (:class:`NonFiniteLossError`) after writing
``output_dir/nonfinite/``: the batch, the loss parts and the weights before the step.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import random
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from reidlab.config import TrainConfig
from reidlab.engine import distributed as D
from reidlab.engine.evaluate import evaluate, resolve_device
from reidlab.engine.schedule import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the message names the step, the term and the dump folder."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained model (not DDP-wrapped), in eval mode
    history: pd.DataFrame  # one row per epoch (read_log)
    metrics: dict | None  # the last evaluation (evaluate_ranking's dict), None if never evaluated
    output_dir: Path
    checkpoint: Path


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj, path: str | Path) -> Path:
    """torch.save to a temporary file in the same folder, then os.replace: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_log(output_dir: str | Path) -> pd.DataFrame:
    """The per-epoch log of a run (``output_dir/log.jsonl``) as a DataFrame."""
    path = Path(output_dir) / LOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no training log at {path}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device`` (None: full precision)."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("TrainConfig.amp='fp16' needs CUDA; use 'bf16' or 'off' on CPU")
        return torch.float16
    raise ValueError(f"TrainConfig.amp: unknown {mode!r}; use auto, bf16, fp16 or off")


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
    """

    def __init__(self, cfg: TrainConfig | dict, split=None, model: nn.Module | None = None):
        if isinstance(cfg, dict):
            cfg = TrainConfig.from_dict(cfg)
        self.cfg = cfg = cfg.resolved()
        self.dist = D.init_distributed()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        self.is_main = self.dist.is_main
        self.output_dir = Path(cfg.output_dir)
        seed_everything(cfg.seed)  # same on all ranks: same initial model

        if split is None:
            from reidlab.data import load_dataset

            split = load_dataset(cfg.dataset, cfg.data_root)
        if not split.train:
            raise ValueError(f"dataset {split.name!r} has no training images")
        self.split = split

        if model is None:
            from reidlab.models import build_model

            model = build_model(cfg.model, **merge_model_kwargs(
                cfg, model_kwargs_for(cfg.model, split, input_size=(cfg.height, cfg.width))))
        self.model = model.to(self.device)
        self.loss_terms = self._loss_terms(model)
        self.requires = set(getattr(model, "requires", set()))

        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.channels_last = cfg.channels_last and self.device.type == "cuda"
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
        self.global_step = 0
        self.last_metrics: dict | None = None
        if self.dist.enabled:  # different augmentation/dropout streams per rank from here on
            seed_everything(cfg.seed + 7919 * self.dist.rank)
        if cfg.resume:
            self._resume()
        elif self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / LOG_NAME).unlink(missing_ok=True)
        if self.is_main:
            atomic_write_text(json.dumps(cfg.to_dict(), indent=2), self.output_dir / "config.json")

    # --- construction
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
        from reidlab.data.sampler import PKSampler
        from reidlab.data.transforms import build_transforms

        cfg = self.cfg
        dataset = ReIDDataset(
            self.split.train,
            transform=build_transforms(cfg.height, cfg.width, train=True, **cfg.transform_opts),
            attribute_spec=self.split.attribute_spec,
        )
        pids = [r.pid for r in self.split.train]
        self.sampler = PKSampler(pids, cfg.batch_p, cfg.batch_k, seed=cfg.seed,
                                 rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader_generator = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda", generator=self.loader_generator,
            persistent_workers=False,  # fresh, (seed, epoch)-seeded workers each epoch: exact resume
        )

    def steps_per_epoch(self) -> int:
        steps = len(self.loader)
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

    def state_dict(self, epoch: int) -> dict:
        return {
            "epoch": epoch,  # epochs completed
            "global_step": self.global_step,
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
        }

    def save_checkpoint(self, epoch: int) -> Path | None:
        if not self.is_main:
            return None
        return atomic_save(self.state_dict(epoch), self.checkpoint_path)

    def _resume(self):
        path = self.checkpoint_path
        if not path.exists():
            log.warning("resume=True but no checkpoint at %s; starting from scratch", path)
            if self.is_main:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                (self.output_dir / LOG_NAME).unlink(missing_ok=True)
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("model_name") != self.cfg.model:
            raise ValueError(f"{path} holds a {state.get('model_name')!r} model, the config asks for {self.cfg.model!r}")
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.start_epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.sampler.set_epoch(int(state["sampler_epoch"]))
        if not self.dist.enabled:  # other ranks' RNG states are not saved; exact resume is single-process
            set_rng_state(state["rng"])
        self.last_metrics = state.get("metrics") or None
        if self.is_main:  # drop log rows of epochs after the checkpoint (a crash between log and checkpoint)
            log_path = self.output_dir / LOG_NAME
            if log_path.exists():
                lines = [l for l in log_path.read_text().splitlines() if l.strip()]
                keep = [l for l in lines if json.loads(l).get("epoch", 0) <= self.start_epoch]
                atomic_write_text("".join(l + "\n" for l in keep), log_path)
        log.info("resumed from %s at epoch %d", path, self.start_epoch)

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

    def train_step(self, batch: dict, epoch: int, step: int) -> tuple[float, dict]:
        batch = self._to_device(batch)
        self._snapshot_buffers()
        total, parts = self.forward_loss(batch)
        finite = bool(torch.isfinite(total.detach()).item())
        if D.any_rank(not finite, self.device):
            self._stop_nonfinite(batch, total, parts, epoch, step, finite)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return float(total.detach()), {k: float(v.detach()) for k, v in parts.items()}

    def _stop_nonfinite(self, batch, total, parts, epoch, step, finite):
        """Write what is needed to look into a non-finite loss, then raise naming the step and term."""
        bad = [k for k, v in parts.items() if not torch.isfinite(torch.as_tensor(v)).all()] or ["total"]
        where = f"epoch {epoch + 1}, step {step} (global step {self.global_step})"
        if finite:  # another rank saw it
            raise NonFiniteLossError(f"non-finite loss on another rank at {where}; see its nonfinite/ folder")
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
            "paths": [self.split.train[i].path for i in batch["index"].tolist()] if "index" in batch else None,
        }
        atomic_write_text(json.dumps(info, indent=2), folder / "nonfinite.json")
        atomic_save({k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in batch.items()}, folder / "batch.pt")
        atomic_save({"model": self._weights_before_step(), "cfg": self.cfg.to_dict(), **{k: info[k] for k in ("epoch", "step", "global_step")}},
                    folder / "weights_before_step.pt")
        values = ", ".join(f"{k}={info['loss_parts'].get(k, info['total'])}" for k in bad)
        raise NonFiniteLossError(
            f"non-finite loss at {where}: term(s) {values}. The batch (indices, pids), the loss parts "
            f"and the weights before this step are in {folder}"
        )

    # --- epochs
    def train_one_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + self.dist.rank)
        self.train_model.train()
        steps = self.steps_per_epoch()
        sums: dict[str, float] = defaultdict(float)
        images = 0
        lr = self.optimizer.param_groups[0]["lr"]
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and self.is_main),
                   leave=False, unit="step")
        start = time.perf_counter()
        for step, batch in enumerate(self.loader):
            if step >= steps:
                break
            loss, parts = self.train_step(batch, epoch, step)
            sums["loss"] += loss
            for key, value in parts.items():
                sums[f"loss/{key}"] += value
            images += batch["image"].shape[0]
            bar.update(1)
            if (step + 1) % max(1, cfg.log_every) == 0 or step + 1 == steps:
                rate = images * self.dist.world_size / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.3f}", img_s=f"{rate:.0f}")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        bar.close()
        self.scheduler.step()
        row = {"epoch": epoch + 1, "step": self.global_step, "lr": lr}
        row.update({k: v / steps for k, v in sums.items()})
        row.update(images_per_s=images * self.dist.world_size / seconds, epoch_s=seconds)
        return row

    def should_evaluate(self, epoch: int) -> bool:
        every = self.cfg.eval_every
        if every < 0:
            return False
        return epoch + 1 == self.cfg.epochs or (every > 0 and (epoch + 1) % every == 0)

    def evaluate(self) -> dict:
        cfg = self.cfg
        return evaluate(unwrap(self.model), self.split, cfg.height, cfg.width, batch_size=cfg.eval_batch_size,
                        flip=cfg.flip_eval, metric=cfg.metric, device=self.device,
                        num_workers=min(cfg.num_workers, 4), progress=cfg.progress)

    def fit(self, until_epoch: int | None = None) -> TrainResult:
        """Train from ``start_epoch`` to ``cfg.epochs`` (or stop after ``until_epoch`` epochs)."""
        cfg = self.cfg
        end = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
        for epoch in range(self.start_epoch, end):
            row = self.train_one_epoch(epoch)
            if self.should_evaluate(epoch):
                if self.is_main:
                    self.last_metrics = self.evaluate()
                    row.update({k: float(self.last_metrics[k]) for k in ("rank1", "rank5", "rank10", "mAP", "mINP")
                                if k in self.last_metrics})
                D.barrier()
            if self.is_main:
                with open(self.output_dir / LOG_NAME, "a") as f:
                    f.write(json.dumps(row) + "\n")
                self.save_checkpoint(epoch + 1)
                summary = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
                log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, summary)
            self.start_epoch = epoch + 1
        D.barrier()
        self.model.eval()
        history = read_log(self.output_dir) if self.is_main and (self.output_dir / LOG_NAME).exists() else pd.DataFrame()
        if self.is_main and self.last_metrics is not None:
            metrics = {k: v for k, v in self.last_metrics.items() if k != "cmc"}
            atomic_write_text(json.dumps(metrics, indent=2, default=float), self.output_dir / "metrics.json")
        return TrainResult(unwrap(self.model), history, self.last_metrics, self.output_dir, self.checkpoint_path)


def train(cfg: TrainConfig | dict, split=None, model: nn.Module | None = None) -> TrainResult:
    """Train a model as ``cfg`` says; see :class:`Trainer`."""
    return Trainer(cfg, split=split, model=model).fit()


def load_checkpoint_model(path: str | Path, device: str | torch.device = "cpu", split=None) -> tuple[nn.Module, TrainConfig]:
    """The model of a training checkpoint (weights loaded, eval mode) and the config it was trained with."""
    from reidlab.models import build_model

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = TrainConfig.from_dict({k: v for k, v in state["cfg"].items() if k in TrainConfig.field_names()})
    kwargs = model_kwargs_for(cfg.model, split, num_classes=state["num_classes"], input_size=(cfg.height, cfg.width))
    model = build_model(cfg.model, **{**merge_model_kwargs(cfg, kwargs), "pretrained": False})
    model.load_state_dict(state["model"])
    return model.to(resolve_device(device)).eval(), cfg
