"""A pretrained backbone without downloads: ResNet trained on a large synthetic corpus.

The papers start every backbone from ImageNet weights, which cannot be had on
these machines. :func:`pretrain_backbone` gives the workbench the same regime:
a backbone that already sees, on top of which GSRPA, CBAM-S or the MSRA modules
are added fresh.

1. A synthetic corpus of its own (``num_ids`` identities, seed 1000 by default),
   drawn independently of the evaluation data (seed 0): the identities are
   other random people, in the same six cameras and the same generator.
2. A BNNeck ResNet (ID + triplet, no attention) trained on its training half
   through the ordinary :class:`~reidlab.engine.trainer.Trainer` (progress bar,
   resumable: a stopped pretraining continues where it was).
3. The backbone's weights saved under torchvision's names to
   ``data/pretrained/resnet{depth}-synthetic.pth`` with a ``.json`` beside it
   (settings, time, the corpus's own retrieval figures). Every model then takes
   ``pretrained="synthetic"`` (or the file's path), read by the same code path as
   ImageNet weights.

How it differs from ImageNet: one synthetic domain, a few thousand images of a
few hundred identities, trained for re-ID rather than for 1,000 object classes.
It teaches edges, colours and body layout in these images, not natural-image
statistics; treat what it shows about attention as a stand-in for the paper's
regime, not as its numbers.

    >>> path = pretrain_backbone(PretrainSettings(depth=18))   # cached: the second call returns at once
    >>> model = build_model("mbgn", num_classes=200, depth=18, pretrained="synthetic", input_size=(128, 64))
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reidlab.engine.checkpoint import atomic_save, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class PretrainSettings:
    """What :func:`pretrain_backbone` trains. The defaults took 13.6 minutes on a 2-core AMD EPYC with
    native bf16 (bf16 autocast; the README's measured figure); on a CPU without native bf16 ``auto``
    trains in fp32, about 1.8x slower."""

    depth: int = 18  # ResNet depth (18, 34, 50, ...)
    height: int = 128  # image height of the corpus and the training, in pixels
    width: int = 64  # image width in pixels
    num_ids: int = 2000  # identities in the corpus (about half train the backbone)
    images_per_id: int = 9  # images drawn per identity
    seed: int = 1000  # the corpus's seed: independent of the evaluation data's (0)
    epochs: int = 6  # training epochs over the corpus's training half
    max_steps_per_epoch: int | None = None  # cap on steps per epoch (none: whole epochs)
    batch_p: int = 16  # P: identities per batch
    batch_k: int = 4  # K: images per identity in a batch
    lr: float = 3.5e-4  # Adam's learning rate (cosine schedule)
    amp: str = "auto"  # precision: auto (bf16 where native, else fp32), bf16, off
    evaluate: bool = True  # rank-1 / mAP on the corpus's test half after training (False: skip it)

    def key(self) -> str:
        return f"resnet{self.depth}-{self.height}x{self.width}-{self.num_ids}ids-seed{self.seed}"


def _data_dir() -> Path:
    from reidlab.models.backbone import default_data_dir

    return default_data_dir()


def to_torchvision_names(backbone_state: dict) -> dict:
    """A :class:`~reidlab.models.backbone.ResNetBackbone` state dict under torchvision's ResNet names
    (``stem.0`` -> ``conv1``, ``stem.1`` -> ``bn1``), the format the weights path reads."""
    renamed = {}
    for key, value in backbone_state.items():
        if key.startswith("stem.0."):
            key = "conv1." + key[len("stem.0."):]
        elif key.startswith("stem.1."):
            key = "bn1." + key[len("stem.1."):]
        renamed[key] = value
    return renamed


def backbone_is_current(output: str | Path, settings: PretrainSettings) -> bool:
    """Whether ``output`` holds a finished backbone pretrained with exactly ``settings``."""
    output = Path(output)
    meta = output.with_suffix(".json")
    return output.exists() and meta.exists() and json.loads(meta.read_text()).get("settings") == dataclasses.asdict(settings)


def pretrain_backbone(settings: PretrainSettings | None = None, output: str | Path | None = None,
                      data_root: str | Path | None = None, run_dir: str | Path | None = None,
                      time_limit: float | None = None, device: str = "auto", num_workers: int | None = None,
                      progress: bool = True, force: bool = False, export_partial: bool = False,
                      resume_command: str = "pretrain_backbone() with the same arguments") -> Path:
    """Train (or reuse) the synthetic-pretrained backbone; returns the weight file's path.

    Cached: when ``output`` exists and its ``.json`` records the same settings it is returned at
    once (``force=True`` trains again). Resumable: the run lives in ``run_dir``; a stopped run
    (``time_limit`` minutes, Ctrl-C) continues from its checkpoint on the next call and the weight
    file is written only when training has finished.
    """
    from reidlab.config import TrainConfig
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.checkpoint import CHECKPOINT_NAME
    from reidlab.engine.trainer import Trainer
    from reidlab.models.backbone import synthetic_weight_file

    settings = settings or PretrainSettings()
    output = Path(output) if output is not None else synthetic_weight_file(settings.depth, search=False)
    meta_path = output.with_suffix(".json")
    wanted = dataclasses.asdict(settings)
    if output.exists() and meta_path.exists() and not force:
        if backbone_is_current(output, settings):
            log.info("synthetic-pretrained backbone already at %s", output)
            return output
        meta = json.loads(meta_path.read_text())
        raise FileExistsError(f"{output} holds a backbone pretrained with other settings ({meta.get('settings')}); "
                              f"pass another output path, or force=True (--force) to replace it")
    root = Path(data_root) if data_root is not None else _data_dir() / f"synthetic-pretrain-{settings.num_ids}ids-seed{settings.seed}"
    run = Path(run_dir) if run_dir is not None else Path("runs") / "pretrain" / settings.key()
    start = time.perf_counter()
    resume = (run / CHECKPOINT_NAME).exists() and not force
    cfg = TrainConfig(  # built (and so checked) before the corpus is generated: a bad option costs nothing
        dataset="synthetic", data_root=str(root), height=settings.height, width=settings.width,
        model="bnneck", model_cfg={"depth": settings.depth, "pretrained": False, "last_stride": 1},
        epochs=settings.epochs, max_steps_per_epoch=settings.max_steps_per_epoch, batch_p=settings.batch_p,
        batch_k=settings.batch_k, lr=settings.lr, schedule="cosine", amp=settings.amp, seed=settings.seed,
        output_dir=str(run), resume=resume, overwrite=force and (run / CHECKPOINT_NAME).exists(),
        eval_every=0 if settings.evaluate else -1, time_limit=time_limit, device=device, num_workers=num_workers, progress=progress,
    )
    if resume:
        _say_changed_settings(run, cfg)
    split = load_synthetic(root, num_ids=settings.num_ids, images_per_id=settings.images_per_id,
                           height=settings.height, width=settings.width, seed=settings.seed)
    print(f"pretraining ResNet-{settings.depth} on {split!r}: {settings.epochs} epochs -> {output}"
          + (f" (resuming {run})" if resume else ""))
    _say_corpus(root, split)
    trainer = Trainer(cfg, split=split)
    trainer.resume_command = resume_command
    result = trainer.fit()
    if not result.completed:
        if export_partial:
            _export_partial(result, output, settings, run)
        raise TimeoutError(f"pretraining stopped ({result.status}) at epoch {result.stopped_at[0]}, step "
                           f"{result.stopped_at[1]}; run {resume_command} to continue from {run}")
    backbone = to_torchvision_names(result.model.backbone.state_dict())
    atomic_save(backbone, output)
    metrics = {k: float(result.metrics[k]) for k in ("rank1", "mAP") if result.metrics and k in result.metrics}
    log_rows = result.history.to_dict("records") if len(result.history) else []
    seconds = sum(float(r.get("epoch_s", 0.0)) for r in log_rows) or time.perf_counter() - start
    atomic_write_text(json.dumps({"settings": wanted, "train_seconds": seconds, "corpus": str(root),
                                  "corpus_metrics": metrics, "run": str(run)}, indent=2), meta_path)
    print(f"backbone written to {output} ({seconds / 60:.1f} min of training"
          + ("; on its own corpus's test half: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items())
             if metrics else "; not evaluated") + ")")
    return output


def _say_changed_settings(run: Path, cfg) -> None:
    """On a resume, one line per setting that differs from the stopped run's (``epochs=1 (was 6)``)."""
    saved_path = run / "config.json"
    if not saved_path.exists():
        return
    saved = json.loads(saved_path.read_text())
    for key, value in cfg.to_dict().items():
        if key in saved and saved[key] != value and key not in ("resume", "overwrite", "time_limit", "progress"):
            print(f"resume: {key}={value!r} (was {saved[key]!r})")


def _say_corpus(root: Path, split) -> None:
    """The corpus's count of images written and used; they differ by the junk images (pid -1), which
    the generator draws as Market-1501 has them and every loader leaves out."""
    from reidlab.data.synthetic import read_marker

    meta = read_marker(root) or {}
    written = sum((meta.get("counts") or {}).values())
    used = len(split.train) + len(split.query) + len(split.gallery)
    if written:
        print(f"corpus: {written:,} images generated; {used:,} used (train, query, gallery), the other "
              f"{written - used:,} are junk images (pid -1), left out as in Market-1501")


def _export_partial(result, output: Path, settings: PretrainSettings, run: Path) -> Path:
    """The backbone of a stopped pretraining, beside the final file's name (``*.partial.pth``), with a JSON
    that says it is partial and after how many steps; never found by ``pretrained="synthetic"``."""
    partial = output.with_name(output.stem + ".partial.pth")
    atomic_save(to_torchvision_names(result.model.backbone.state_dict()), partial)
    epoch, step = result.stopped_at
    atomic_write_text(json.dumps({"settings": dataclasses.asdict(settings), "partial": True,
                                  "stopped_before_epoch": epoch, "steps_done_in_that_epoch": step, "run": str(run)},
                                 indent=2), partial.with_suffix(".json"))
    print(f"partial backbone (stopped at epoch {epoch}, step {step}; not the finished pretraining) written to {partial}; "
          "use it with pretrained=PATH")
    return partial


def add_pretrain_command(sub) -> None:
    """``reidlab pretrain``: the synthetic-pretrained backbone (see this module)."""
    defaults = PretrainSettings()
    p = sub.add_parser("pretrain", help="pretrain a ResNet backbone on a large synthetic corpus (stands in for ImageNet)")
    from reidlab.config import field_comments

    comments = field_comments(PretrainSettings)
    for f in dataclasses.fields(PretrainSettings):
        if f.type in (bool, "bool"):
            p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action=argparse.BooleanOptionalAction,
                           default=getattr(defaults, f.name), help="evaluate the backbone on the corpus's test half "
                           "after training (default: yes)")
            continue
        default = getattr(defaults, f.name)
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(default) if default is not None else int,
                       default=default, help=f"{comments[f.name]} (default: {'none' if default is None else default})",
                       **({"choices": ("auto", "bf16", "off")} if f.name == "amp" else {}))
    p.add_argument("--output", default=None, help="weight file (default: data/pretrained/resnet{depth}-synthetic.pth)")
    p.add_argument("--data-root", default=None, help="where the corpus is generated (default: data/synthetic-pretrain-...)")
    p.add_argument("--run-dir", default=None, help="the training run's folder (default: runs/pretrain/...)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="minutes: stop at a step boundary with a checkpoint; the same command continues (default: none)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1 (default: auto)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data-loader processes (default: the CPUs this process may use, at most 8)")
    p.add_argument("--force", action="store_true", help="train again even when the file exists")
    p.add_argument("--export-partial", action="store_true",
                   help="when stopped (--time-limit, Ctrl-C), also write the backbone so far as *.partial.pth, "
                   "marked partial in its JSON")
    p.set_defaults(func=_cmd_pretrain)


def _cmd_pretrain(args) -> int:
    settings = PretrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainSettings)})
    try:
        import shlex
        import sys

        pretrain_backbone(settings, output=args.output, data_root=args.data_root, run_dir=args.run_dir,
                          time_limit=args.time_limit, device=args.device, num_workers=args.num_workers, force=args.force,
                          export_partial=args.export_partial,
                          resume_command=shlex.join(["reidlab", *[a for a in sys.argv[1:] if a != "--force"]]))
    except TimeoutError as stopped:
        print(stopped)
        return 0
    return 0
