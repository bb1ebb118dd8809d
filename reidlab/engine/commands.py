"""``reidlab train``, ``reidlab evaluate`` and ``reidlab demo`` (registered by reidlab/cli.py).

    reidlab train --preset baseline/bnneck --data-root /data/market1501 --dataset market1501
    reidlab train --model bnneck --model-cfg '{"depth": 18}' --height 128 --width 64 --epochs 6
    reidlab evaluate --checkpoint runs/default --flip --rerank
    reidlab demo

Every :class:`~reidlab.config.TrainConfig` field is a ``train`` option
(``--field-name``; dicts as JSON, tuples as several values, booleans as
``--flag/--no-flag``); ``--config file.json`` reads a whole config; options
given explicitly override the file, which overrides the preset.
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

from reidlab.config import TrainConfig

log = logging.getLogger(__name__)

_HELP = {
    "dataset": "dataset name for reidlab.data.load_dataset (market1501, dukemtmc, cuhk03, cuhk01, folder, synthetic)",
    "data_root": "the dataset's folder",
    "model": "registered model name (bnneck, pcb, mgn, mbgn, msra, ...)",
    "model_cfg": "JSON dict of model builder arguments, e.g. '{\"depth\": 18}'",
    "preset": "named preset (reidlab.presets.list_presets()): model, model_cfg and train settings",
    "resume": "continue from OUTPUT_DIR/checkpoint.pt",
    "amp": "mixed precision: auto (bf16/fp16 on CUDA, off on CPU), bf16, fp16, off",
    "schedule": "lr schedule: mbgn (constant then x decay per epoch), cosine, step, constant",
    "max_steps_per_epoch": "cap on steps per epoch (quick runs)",
    "eval_every": "evaluate every N epochs and after the last (0: only after the last, -1: never)",
}


def _option_type(tp):
    """(argparse kwargs) for a dataclass field type."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if tp is dict or origin is dict:
        return {"type": json.loads, "metavar": "JSON"}
    if origin is tuple:
        return {"type": type(args[0]) if not isinstance(args[0], type) else args[0], "nargs": "*"}
    if args and len(args) == 1:  # Optional[X]
        return _option_type(args[0])
    if tp in (int, float, str):
        return {"type": tp}
    return {"type": str}


def add_train_config_options(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig().to_dict()
    group = parser.add_argument_group("training configuration (TrainConfig fields)")
    for f in dataclasses.fields(TrainConfig):
        kwargs = _option_type(hints[f.name])
        kwargs["default"] = None  # unset: the config file, preset or dataclass default applies
        kwargs["help"] = f"{_HELP.get(f.name, f.name.replace('_', ' '))} (default: {defaults[f.name]})"
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    parser.add_argument("--config", help="JSON file with TrainConfig fields")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if getattr(args, "config", None):
        values.update(json.loads(Path(args.config).read_text()))
    for name in TrainConfig.field_names():
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return TrainConfig.from_dict(values)


# ----------------------------------------------------------------------------- train
def _cmd_train(args) -> int:
    from reidlab.engine.evaluate import chance_level
    from reidlab.engine.trainer import Trainer

    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    print(f"training {cfg.model} on {trainer.split!r} for {cfg.epochs} epochs -> {cfg.output_dir}")
    result = trainer.fit()
    if trainer.is_main:
        _print_metrics(result.metrics, chance_level(trainer.split))
        print(f"checkpoint: {result.checkpoint}\nlog: {Path(cfg.output_dir) / 'log.jsonl'}")
    from reidlab.engine.distributed import cleanup

    cleanup()  # leave the torchrun process group cleanly
    return 0


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

    path = Path(args.checkpoint)
    _, cfg = load_checkpoint_model(path, device="cpu")  # config first: which dataset by default
    dataset = args.dataset or cfg.dataset
    root = args.data_root or cfg.data_root
    split = load_dataset(dataset, root)
    model, cfg = load_checkpoint_model(path, device=args.device, split=split)
    result = evaluate(
        model, split, args.height or cfg.height, args.width or cfg.width, batch_size=args.batch_size,
        flip=args.flip, metric=args.metric, rerank=args.rerank, device=args.device, num_workers=args.num_workers,
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
    if split.attribute_spec is not None:
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
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a training checkpoint (rank-1, mAP, mINP)")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt or the run folder holding it")
    p.add_argument("--dataset", default=None, help="dataset name (default: the one trained on)")
    p.add_argument("--data-root", default=None, help="dataset folder (default: the one trained on)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--flip", action="store_true", help="average features with the mirrored image's")
    p.add_argument("--metric", default="euclidean", help="euclidean or cosine")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--output", default=None, help="also write the metrics to this JSON file")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="the whole job on the built-in synthetic data, on a CPU in a few minutes")
    p.add_argument("--data-root", default=None, help=f"synthetic dataset folder (default: {DemoSettings.data_root})")
    p.add_argument("--output-dir", default=None, help=f"run folder (default: {DemoSettings.output_dir})")
    p.add_argument("--epochs", type=int, default=None, help=f"(default: {DemoSettings.epochs})")
    p.set_defaults(func=_cmd_demo)
