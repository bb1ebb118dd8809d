"""Training configuration: one dataclass, every hyper-parameter a paper states is a field.

Defaults are MBGN's (Sec. 4.2): Adam (beta1 0.9, beta2 0.999), lr 2e-4 constant
for 40 epochs then x0.98 per epoch, P=16 identities x K=4 images per batch.
MBGN's loss settings (triplet margin 1.2, lambda = 2 in Eq. 8) are part of the
*model's* declared total loss (``model.loss_terms``, see :mod:`reidlab.models`);
``margin`` / ``triplet_weight`` here override them for every triplet term when set.

    >>> cfg = TrainConfig.from_preset("baseline/bnneck", epochs=5)
    >>> cfg = TrainConfig.from_dict({"model": "bnneck", "model_cfg": {"depth": 18}})

A named ``preset`` (reidlab.presets) fills ``model``, ``model_cfg`` and its
``train_cfg`` overrides; explicit values given next to it win.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AMP_MODES = ("auto", "bf16", "fp16", "off")
SCHEDULES = ("mbgn", "cosine", "step", "constant")
OPTIMIZERS = ("adam", "adamw", "sgd")
METRICS = ("euclidean", "cosine")
PROTOCOLS = ("market", "cuhk03")
MERGED_FIELDS = ("model_cfg", "transform_opts")  # dicts merged key by key over a preset / saved config


def merge_dicts(base: dict, override: dict) -> dict:
    """``base`` updated by ``override`` key by key; a key set to None in ``override`` is removed.

    This is how ``--model-cfg`` / ``--config`` combine with a preset: ``{"depth": 18}`` shrinks the
    preset's model and keeps everything else, ``{"attention": null}`` drops one of its keys.
    """
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def default_num_workers() -> int:
    """Data-loader workers for this machine: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus))


def _type_error(name: str, value, expected: str) -> ValueError:
    return ValueError(f"TrainConfig.{name}: expected {expected}, got {value!r} ({type(value).__name__})")


def _check_value_type(name: str, tp, value):
    """``value`` converted to the field type ``tp`` where lossless (int -> float, list -> tuple), else a
    ValueError naming the field, e.g. ``TrainConfig.height: expected an integer, got '128' (str)``."""
    origin, args = typing.get_origin(tp), [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(tp):
            return None
        raise _type_error(name, value, "a value (null is not allowed here)")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and len(args) == 1:
        return _check_value_type(name, args[0], value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(name, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise _type_error(name, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(name, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(name, value, "a string")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _type_error(name, value, "a JSON object ({...})")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _type_error(name, value, "a list")
        item = args[0] if args else Any
        return tuple(_check_value_type(f"{name}[{i}]", item, v) for i, v in enumerate(value)) if item is not Any else tuple(value)
    return value


def field_comments(cls) -> dict[str, str]:
    """The comment after each field of dataclass ``cls`` in its source: the help text of the option
    that sets it (``reidlab train --help``), so a field and its description live on one line."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?  # (.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


@dataclass
class TrainConfig:
    # --- data
    dataset: str = "synthetic"  # a name reidlab.data.load_dataset knows
    data_root: str | None = None  # None: the dataset's default place (synthetic: data/synthetic)
    height: int = 256  # input height in pixels (MSRA Sec. 4.2: 256x128; MBGN does not state it, the common choice)
    width: int = 128  # input width in pixels
    transform_opts: dict = field(default_factory=dict)  # to reidlab.data.transforms.build_transforms
    # --- model
    model: str = "bnneck"  # a registered model name (reidlab.models.list_models())
    model_cfg: dict = field(default_factory=dict)  # to the model's builder (depth, last_stride, ...)
    preset: str | None = None  # a reidlab.presets name: fills model, model_cfg and train settings
    margin: float | None = None  # None: the model's own triplet margin (MBGN: 1.2)
    triplet_weight: float | None = None  # None: the model's own lambda (MBGN Eq. 8: 2)
    # --- batches: P identities x K images (MBGN Sec. 4.2)
    epochs: int = 120  # MBGN states no total; 120 is the usual BoT-style length
    batch_p: int = 16  # P: identities per batch
    batch_k: int = 4  # K: images per identity in a batch
    # --- optimiser (MBGN Sec. 4.2)
    optimizer: str = "adam"  # "adam" | "sgd"
    lr: float = 2e-4  # base learning rate (MBGN: Adam 2e-4)
    weight_decay: float = 5e-4  # not stated by MBGN; the BoT value
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's beta1 beta2
    momentum: float = 0.9  # SGD only
    lr_mult: dict = field(default_factory=dict)  # parameter-name prefix -> lr multiplier, e.g. {"attention.": 10}
    # --- learning-rate schedule, per epoch
    schedule: str = "mbgn"  # "mbgn" | "cosine" | "step" | "constant"
    constant_epochs: int = 40  # mbgn: lr constant for this many epochs ...
    decay: float = 0.98  # ... then multiplied by this every epoch
    warmup_epochs: int = 0  # linear warm-up (any schedule)
    step_epochs: tuple[int, ...] = ()  # step: epochs at which lr *= step_gamma (MSRA: the last part at 0.001)
    step_gamma: float = 0.1  # step: the factor applied at each of step_epochs
    # --- speed
    amp: str = "auto"  # "auto": bf16 where the device runs it natively (CUDA, CPUs with avx512_bf16/amx), fp16 + scaler on older GPUs
    channels_last: bool = True  # CUDA; on CPU only under native bf16, where it measured faster (engine/precision.py)
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm under DDP
    num_workers: int | None = None  # None: the CPUs this process may use (at most 8)
    # --- evaluation
    eval_every: int = 10  # evaluate every N epochs and after the last one; 0: only after the last
    flip_eval: bool = False  # average the features of an image and its mirror
    eval_batch_size: int = 128  # images per batch when extracting features
    metric: str = "euclidean"  # "euclidean" | "cosine"
    protocol: str = "market"  # "market" (CMC/mAP/mINP) | "cuhk03" (adds the single-gallery-shot CMC)
    # --- run
    seed: int = 0  # seeds the model's initialisation, the sampler and every augmentation
    output_dir: str = "runs/default"  # the run folder: config.json, checkpoint.pt, log.jsonl, metrics.json
    resume: bool = False  # continue from output_dir/checkpoint.pt
    overwrite: bool = False  # replace the run already in output_dir (its own files only)
    time_limit: float | None = None  # minutes: stop cleanly at a step boundary with a resumable checkpoint
    skip_bad_images: bool = False  # drop unreadable training/test images (listed in the log) instead of stopping
    allow_missing: bool = False  # train/evaluate a keypoint/attribute model on records that lack them
    check_finite: bool = True  # stop at the first step whose loss, gradients or weights are not finite
    divergence_factor: float | None = 1e4  # stop when the loss exceeds this x the first step's loss (None: never)
    device: str = "auto"  # "auto": CUDA when present, else CPU
    max_steps_per_epoch: int | None = None  # cap for quick runs
    log_every: int = 10  # progress-bar refresh, in steps
    progress: bool = True  # tqdm bars

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _check_value_type(f.name, hints[f.name], getattr(self, f.name)))
        self.validate()

    def validate(self) -> "TrainConfig":
        def bad(name, value, allowed):
            raise ValueError(f"TrainConfig.{name}: {value!r} is not one of {allowed}")

        if self.amp not in AMP_MODES:
            bad("amp", self.amp, AMP_MODES)
        if self.schedule not in SCHEDULES:
            bad("schedule", self.schedule, SCHEDULES)
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, OPTIMIZERS)
        if self.metric not in METRICS:
            bad("metric", self.metric, METRICS)
        if self.protocol not in PROTOCOLS:
            bad("protocol", self.protocol, PROTOCOLS)
        if self.resume and self.overwrite:
            raise ValueError("TrainConfig: resume and overwrite exclude each other (continue the run, or replace it)")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"TrainConfig.time_limit must be > 0 minutes, got {self.time_limit}")
        if len(self.betas) != 2:
            raise ValueError(f"TrainConfig.betas: need two values, got {self.betas}")
        for name in ("epochs", "batch_p", "batch_k", "height", "width"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        return self

    # --- dict round trip
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["step_epochs"] = list(self.step_epochs)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. parsed JSON); unknown keys are an error naming them.

        With ``"preset"`` in ``values`` the preset fills model, model_cfg and its
        train settings first; the other keys of ``values`` override it.
        """
        if not isinstance(values, dict):
            raise ValueError(f"TrainConfig: expected a JSON object of fields, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}; known: {cls.field_names()}")
        values = dict(values)
        if values.get("preset"):
            values = merge_config_values(preset_values(values["preset"]), values)
        cfg = cls(**values)
        cfg._preset_applied = bool(values.get("preset"))
        return cfg

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TrainConfig":
        return cls.from_dict({"preset": name, **overrides})

    @classmethod
    def from_json(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read a TrainConfig from {path}: {err}") from err
        return cls.from_dict(values)

    def resolved(self) -> "TrainConfig":
        """This config with its preset applied to the fields still at their defaults.

        (``from_dict``/``from_preset`` already apply it; this covers
        ``TrainConfig(preset=...)`` built directly.)
        """
        if not self.preset or getattr(self, "_preset_applied", False):
            return self
        defaults = TrainConfig().to_dict()
        values = self.to_dict()
        for key, value in preset_values(self.preset).items():
            if key in MERGED_FIELDS:
                values[key] = merge_dicts(value, values[key])
            elif values[key] == defaults[key]:
                values[key] = value
        return TrainConfig(**values)


def merge_config_values(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Config values ``base`` (a preset's, or a saved run's) overridden by ``override``: plain fields
    are replaced, the dict fields (``model_cfg``, ``transform_opts``) merged key by key (:func:`merge_dicts`)."""
    merged = {**base, **override}
    for key in MERGED_FIELDS:
        if key in override and isinstance(override[key], dict) and isinstance(base.get(key), dict):
            merged[key] = merge_dicts(base[key], override[key])
    return merged


def preset_values(name: str) -> dict[str, Any]:
    """The TrainConfig fields a named preset sets: model, model_cfg and its train_cfg."""
    from reidlab.presets import get_preset

    preset = get_preset(name)
    unknown = sorted(set(preset.train_cfg) - set(TrainConfig.field_names()))
    if unknown:
        raise ValueError(f"preset {name!r}: train_cfg has unknown TrainConfig field(s) {unknown}")
    return {"model": preset.model, "model_cfg": dict(preset.model_cfg), **preset.train_cfg}
