"""``reidlab train``, ``reidlab evaluate`` and ``reidlab demo`` (registered by reidlab/cli.py).

    reidlab train --preset baseline/bnneck --data-root /data/market1501 --dataset market1501
    reidlab train --model bnneck --model-cfg '{"depth": 18}' --height 128 --width 64 --epochs 6
    reidlab evaluate --checkpoint runs/default --flip --rerank
    reidlab demo

Every :class:`~reidlab.config.TrainConfig` field is a ``train`` option
(``--field-name``; dicts as JSON, tuples as several values, booleans as
``--flag/--no-flag``); ``--config file.json`` reads a whole config; options
given explicitly override the file, which overrides the preset. The dict
options (``--model-cfg``, ``--transform-opts``) are *merged* key by key into the
preset's (a key set to null removes it), so ``--preset mbgn/table2/Baseline
--model-cfg '{"depth": 18}'`` is the Baseline with ResNet-18.

``--resume`` reads the run's own ``config.json``; options given next to it
override it (a line says which).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.config import TrainConfig, merge_config_values

log = logging.getLogger(__name__)

_HELP = {
    "dataset": "dataset name for reidlab.data.load_dataset (market1501, dukemtmc, cuhk03, cuhk01, folder, synthetic)",
    "data_root": "the dataset's folder",
    "model": "registered model name (bnneck, pcb, mgn, mbgn, msra, ...)",
    "model_cfg": "JSON dict of model builder arguments, e.g. '{\"depth\": 18}'",
    "preset": "named preset (reidlab.presets.list_presets()): model, model_cfg and train settings",
    "resume": "continue the run in OUTPUT_DIR (its config.json and checkpoint.pt; options given override)",
    "overwrite": "replace the run already in OUTPUT_DIR (only its own files are removed)",
    "time_limit": "minutes: stop at a step boundary with a checkpoint that --resume continues exactly",
    "skip_bad_images": "leave unreadable images out (listed) instead of stopping before the first epoch",
    "allow_missing": "let a keypoint/attribute model run on images that lack them (ablations)",
    "num_workers": "data-loader processes",
    "protocol": "evaluation protocol: market (CMC/mAP/mINP) or cuhk03 (single-gallery-shot CMC)",
    "check_finite": "stop at the first step whose loss, gradients or weights are NaN/inf",
    "divergence_factor": "stop when the loss exceeds this x the first step's loss (lr far too high)",
    "amp": "precision: auto (bf16 where the device runs it natively: CUDA, CPUs with avx512_bf16/amx_bf16; fp16 + "
           "scaler on older GPUs; fp32 elsewhere and under reidlab.pin), bf16, fp16 (CUDA), off (fp32); the start "
           "line and log.jsonl say which ran",
    "schedule": "lr schedule: mbgn (constant then x decay per epoch), cosine, step, constant",
    "max_steps_per_epoch": "cap on steps per epoch (quick runs)",
    "margin": "triplet-loss margin (MBGN: 1.2)",
    "triplet_weight": "weight of the triplet loss against the ID loss (MBGN Eq. 8: 2)",
    "epochs": "training epochs (MBGN states no total; 120 is the usual BoT-style length)",
    "weight_decay": "weight decay (not stated by MBGN; the BoT value)",
    "momentum": "SGD's momentum (unused by Adam)",
    "optimizer": "optimiser: adam (MBGN, MSRA) or sgd",
    "constant_epochs": "mbgn schedule: epochs at the base lr before the per-epoch decay starts",
    "decay": "mbgn schedule: lr factor per epoch after the constant epochs",
    "transform_opts": "JSON dict of augmentation options for reidlab.data.transforms.build_transforms, e.g. "
                      "'{\"erasing_prob\": 0}'",
    "eval_every": "evaluate every N epochs and after the last (0: only after the last, -1: never)",
}


def _option_type(tp):
    """(argparse kwargs) for a dataclass field type."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp is dict or origin is dict:
        return {"type": _json_option, "metavar": "JSON"}
    if origin is tuple:
        return {"type": type(args[0]) if not isinstance(args[0], type) else args[0], "nargs": "*"}
    if args and len(args) == 1:  # Optional[X]
        return _option_type(args[0])
    if tp in (int, float, str):
        return {"type": tp}
    return {"type": str}


# Options whose values are a fixed set: argparse lists and checks them.
CHOICES = {"amp": ("auto", "bf16", "fp16", "off"), "schedule": ("mbgn", "cosine", "step", "constant"),
           "optimizer": ("adam", "sgd"), "metric": ("euclidean", "cosine"), "protocol": ("market", "cuhk03")}
# What "unset" means for options whose dataclass default is None.
NONE_DEFAULTS = {"data_root": "the dataset's own place (synthetic: data/synthetic)", "preset": "none",
                 "margin": "the model's own", "triplet_weight": "the model's own", "num_workers": "the CPUs, at most 8",
                 "time_limit": "none", "divergence_factor": "never", "max_steps_per_epoch": "whole epochs"}


def option_help(name: str, default) -> str:
    """One option's help: what it does (``_HELP``, else the field's comment in config.py) and one default."""
    from reidlab.config import field_comments

    text = _HELP.get(name) or field_comments(TrainConfig).get(name) or name.replace("_", " ")
    shown = NONE_DEFAULTS.get(name, "none") if default is None else \
        (json.dumps(default) if isinstance(default, (dict, list, tuple)) else default)
    return f"{text} (default: {shown})"


def add_train_config_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig().to_dict()
    group = parser.add_argument_group("training configuration (TrainConfig fields)")
    for f in dataclasses.fields(TrainConfig):
        kwargs = _option_type(hints[f.name])
        kwargs["default"] = None  # unset: the config file, preset or dataclass default applies
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        kwargs["help"] = option_help(f.name, defaults[f.name])
        flags = ["--" + f.name.replace("_", "-")] + (["--root"] if f.name == "data_root" else [])
        group.add_argument(*flags, dest=f.name, **kwargs)
    parser.add_argument("--config", help="JSON file with TrainConfig fields")


def _json_option(text: str):
    """argparse type for JSON options: a clear message instead of a JSONDecodeError traceback."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error.msg} at character {error.pos}): {text}") from None


def read_json_file(path: str | Path, what: str = "config") -> dict:
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} file {path} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object of TrainConfig fields, not a {type(values).__name__}")
    return values


def _given_options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in TrainConfig.field_names() if getattr(args, name, None) is not None}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: preset <- ``--config`` file <- options given (dicts merged key by key).

    With ``--resume`` the run's saved ``config.json`` is the base instead, and the options given
    override it (logged). Without ``--dataset``, a ``--data-root`` is inspected, never generated into."""
    given = _given_options(args)
    if given.get("resume"):
        saved = Path(given.get("output_dir") or TrainConfig().output_dir) / "config.json"
        if saved.exists():
            base = read_json_file(saved, "run config")
            base.pop("resume", None)
            base.pop("precision_used", None)  # what the earlier invocation ran, not a setting
            changed = {k: v for k, v in given.items() if k not in ("resume", "output_dir") and base.get(k) != v}
            if changed:
                print("resume: overriding the run's config.json with " +
                      ", ".join(f"{k}={v!r} (was {base.get(k)!r})" for k, v in changed.items()))
            values = merge_config_values(base, given)
            values.pop("overwrite", None)
            return TrainConfig.from_dict(values)
        log.warning("--resume: no config.json in %s; using the options given", saved.parent)
    values: dict = read_json_file(args.config) if getattr(args, "config", None) else {}
    values = merge_config_values(values, given)
    if values.get("data_root") and not values.get("dataset"):
        values["dataset"] = _detect_dataset(values["data_root"])
    return TrainConfig.from_dict(values)


def _detect_dataset(root: str) -> str:
    """The dataset name for a ``--data-root`` given without ``--dataset`` (never the generator on a user folder)."""
    from reidlab.data import detect_dataset

    name = detect_dataset(root)
    if name is None:
        raise ValueError(f"--data-root {root}: cannot tell which dataset this is; name it with --dataset "
                         f"(market1501, dukemtmc, cuhk03, cuhk01, folder, synthetic)")
    print(f"--dataset not given: {root} looks like {name}")
    return name


# ----------------------------------------------------------------------------- train
def _cmd_train(args) -> int:
    from reidlab.engine.evaluate import chance_level
    from reidlab.engine.trainer import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg, trust_checkpoint=args.trust_checkpoint)
    print(f"training {cfg.model} {json.dumps(cfg.model_cfg, sort_keys=True)} "
          f"({'preset ' + cfg.preset if cfg.preset else 'no preset'}) at {cfg.height}x{cfg.width} on "
          f"{trainer.split!r} for {cfg.epochs} epochs, precision {trainer.precision} -> {cfg.output_dir}")
    result = trainer.fit()
    if trainer.is_main and result.completed:
        _print_metrics(result.metrics, chance_level(trainer.split))
        print(f"checkpoint: {result.checkpoint}\nlog: {Path(cfg.output_dir) / 'log.jsonl'}")
    from reidlab.engine.distributed import cleanup

    cleanup()  # leave the torchrun process group cleanly
    return {"completed": 0, "time_limit": 0, "interrupted": 130}[result.status]


def _print_metrics(metrics: dict | None, chance: dict | None = None) -> None:
    if not metrics:
        print("(not evaluated)")
        return
    line = "  ".join(f"{k} {100 * float(metrics[k]):.1f}%" for k in ("rank1", "rank5", "rank10", "mAP", "mINP") if k in metrics)
    print(line)
    if chance:
        print(f"chance level (random ranking): rank-1 {100 * chance['rank1']:.2f}%, mAP {100 * chance['mAP']:.2f}% "
              f"({chance['gallery_ids']} gallery ids)")


# ----------------------------------------------------------------------------- evaluate
def _cmd_evaluate(args) -> int:
    from reidlab.data import load_dataset
    from reidlab.engine.evaluate import chance_level, evaluate, results_frame
    from reidlab.engine.trainer import load_checkpoint_model

    from reidlab.engine.checkpoint import load_checkpoint

    path = Path(args.checkpoint)
    saved = load_checkpoint(path, trust=args.trust_checkpoint)["cfg"]  # which dataset, by default
    dataset = args.dataset or saved.get("dataset")
    root = args.data_root or saved.get("data_root")
    # Never generate data into a path read from a checkpoint: a missing dataset is an error.
    split = load_dataset(dataset, root, generate=False)
    model, cfg = load_checkpoint_model(path, device=args.device, split=split, trust=args.trust_checkpoint)
    needed = set(getattr(model, "requires", set())) & {"keypoints", "attributes"}
    if needed:
        from reidlab.data.records import check_requirements

        check_requirements(split, needed, allow_missing=args.allow_missing, subsets=("query", "gallery"))
    result = evaluate(
        model, split, args.height or cfg.height, args.width or cfg.width, batch_size=args.batch_size,
        flip=args.flip, metric=args.metric, rerank=args.rerank, device=args.device, num_workers=args.num_workers,
        protocol=args.protocol,
    )
    _print_metrics(result, chance_level(split))
    frame = results_frame({f"{cfg.model}@{dataset}": result})
    print(frame.round(2).to_string())
    if args.output:
        Path(args.output).write_text(json.dumps({k: v for k, v in result.items() if k != "cmc"}, indent=2, default=float))
    return 0


# ----------------------------------------------------------------------------- demo
@dataclass
class DemoSettings:
    """What ``reidlab demo`` (and ``make demo``) runs: the README quotes these values."""

    data_root: str = "data/synthetic"
    output_dir: str = "runs/demo"
    model: str = "bnneck"
    model_cfg: dict = field(default_factory=lambda: {"depth": 18, "last_stride": 1, "pretrained": True})
    height: int = 128
    width: int = 64
    epochs: int = 4
    max_steps_per_epoch: int | None = 20  # 4 x 20 steps x 64 images: about 2-3 min on 2 free CPU cores
    batch_p: int = 16
    batch_k: int = 4
    lr: float = 3.5e-4  # from scratch on CPU: a little above MBGN's 2e-4, constant over so short a run
    schedule: str = "constant"
    num_workers: int = 2
    eval_every: int = 0  # evaluate once, after the last epoch
    overwrite: bool = True  # runs/demo is the demo's own folder: each `make demo` replaces it

    def train_config(self, **overrides) -> TrainConfig:
        values = dataclasses.asdict(self)
        values.update(dataset="synthetic")
        values.update(overrides)
        return TrainConfig.from_dict(values)


def run_demo(settings: DemoSettings | None = None, **overrides):
    """The demo as a function: synthetic data (generated if missing) -> summary -> train -> evaluate."""
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.evaluate import chance_level
    from reidlab.engine.trainer import Trainer

    settings = settings or DemoSettings()
    start = time.perf_counter()
    print(f"1/3 data: the built-in synthetic dataset at {settings.data_root} (generated on first use)")
    split = load_synthetic(settings.data_root)
    print(split)
    print(split.summary().to_string())
    if split.attribute_spec:
        print(f"attributes: {len(split.attribute_spec)} ({', '.join(split.attribute_spec.names[:8])}, ...)")
    cfg = settings.train_config(**overrides)
    print(f"\n2/3 train: {cfg.model} {cfg.model_cfg} at {cfg.height}x{cfg.width}, {cfg.epochs} epochs, "
          f"P x K = {cfg.batch_p} x {cfg.batch_k}, lr {cfg.lr} ({cfg.schedule})")
    trainer = Trainer(cfg, split=split)
    if not getattr(trainer.model, "backbone", None) or not trainer.model.backbone.pretrained_loaded:
        print("   (no ImageNet weights found: training from scratch; see the warning above)")
    result = trainer.fit()
    print("\n3/3 evaluate: query vs gallery")
    _print_metrics(result.metrics, chance_level(split))
    print(f"done in {time.perf_counter() - start:.0f} s; log: {Path(cfg.output_dir) / 'log.jsonl'}, "
          f"checkpoint: {result.checkpoint}")
    return result


def _cmd_demo(args) -> int:
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.output_dir:
        overrides["output_dir"] = args.output_dir
    settings = DemoSettings()
    if args.data_root:
        settings.data_root = args.data_root
    run_demo(settings, **overrides)
    return 0


# ----------------------------------------------------------------------------- registration
def add_commands(sub) -> None:
    """Add ``train``, ``evaluate`` and ``demo`` to the ``reidlab`` subparsers."""
    p = sub.add_parser("train", help="train a model (TrainConfig fields as options)")
    add_train_config_options(p)
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="--resume from a checkpoint that needs full unpickling (older reidlab files): it can run code")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a training checkpoint (rank-1, mAP, mINP)")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or the run folder holding it")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one trained on)")
    p.add_argument("--data-root", "--root", dest="data_root", default=None,
                   help="dataset folder (default: the one trained on; never generated into)")
    p.add_argument("--height", type=int, default=None, help="input height in pixels (default: the one trained at)")
    p.add_argument("--width", type=int, default=None, help="input width in pixels (default: the one trained at)")
    p.add_argument("--batch-size", type=int, default=128, help="images per batch when extracting features (default: 128)")
    p.add_argument("--flip", action="store_true", help="average features with the mirrored image's")
    p.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"),
                   help="distance between query and gallery features (default: euclidean)")
    p.add_argument("--protocol", default="market", choices=("market", "cuhk03"),
                   help="market: CMC/mAP/mINP; cuhk03: the single-gallery-shot CMC (mAP on the full gallery)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint that needs full unpickling (older reidlab files): it can run code")
    p.add_argument("--allow-missing", action="store_true",
                   help="evaluate a keypoint/attribute model on images that lack them")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1 = 20, k2 = 6, lambda = 0.3)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--num-workers", type=int, default=2, help="data-loader processes (default: 2)")
    p.add_argument("--output", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the whole job on the built-in synthetic data, on a CPU in a few minutes")
    p.add_argument("--data-root", "--root", dest="data_root", default=None,
                   help=f"synthetic dataset folder (default: {DemoSettings.data_root})")
    p.add_argument("--output-dir", default=None, help=f"run folder (default: {DemoSettings.output_dir})")
    p.add_argument("--epochs", type=int, default=None, help=f"(default: {DemoSettings.epochs})")
    p.set_defaults(func=_cmd_demo)
