"""The small trained models the notebooks show: cached, seeded, made on first use.

A picture of an untrained network teaches nothing about what a paper claims, so
each notebook shows its component on an untrained and a trained model side by
side. :func:`zoo_model` gives either: the trained one from ``runs/notebooks/NAME``
(trained there on first use, with a progress bar; later calls load it), the
untrained one as the same network at the same seed before its first step.

How they are made (far from the papers' setting, and said so in every notebook):
the built-in synthetic data at 128x64, ResNet-18 from a small synthetic-pretrained
backbone shared by every entry (:mod:`reidlab.engine.pretrain`, ``ZOO_PRETRAIN``; the
stand-in for ImageNet, 44 steps), then 30 steps of Adam per entry on the CPU. Cheap on
purpose: ``make demo`` trains the two models the tour shows in about 3 minutes, and each
notebook's first open trains only the models it shows. Every job runs in a child process
under :mod:`reidlab.pin` (float32, AVX2 kernels, :data:`ZOO_THREADS` threads), so the models,
and the numbers the notebooks store from them, are the same bits on any x86-64 CPU with AVX2.
The papers train ResNet-50 from ImageNet weights at 384x128 / 256x128 for 100+ epochs on
the real datasets.

    >>> model, split = zoo_model("mbgn")               # trained (made on first use)
    >>> fresh, _ = zoo_model("mbgn", trained=False)    # the same network before training
    >>> zoo_table()                                    # what each entry is, and whether it exists
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reidlab.engine.pretrain import PretrainSettings

log = logging.getLogger(__name__)

HEIGHT, WIDTH, DEPTH = 128, 64, 18
# Training threads, fixed (reidlab.pin): float sums in the backward pass depend on how work is split
# between threads, and the notebooks' stored numbers must repeat on every machine.
ZOO_THREADS = 2
# The notebooks' own small pretraining (the full `reidlab pretrain` is far larger): 2 epochs over 200
# identities, 44 steps of 16 x 4 images at Adam 1e-3 (fine-tuned Baseline 8.2% rank-1 against 7.2% at 3.5e-4),
# about a minute here; not evaluated (its figures are not shown).
ZOO_PRETRAIN = PretrainSettings(depth=DEPTH, height=HEIGHT, width=WIDTH, num_ids=400, images_per_id=6, epochs=2,
                                lr=1e-3, amp="off", evaluate=False)


@dataclass(frozen=True)
class ZooEntry:
    """One notebook model: a preset (or model name) and its short training schedule."""

    name: str
    preset: str
    what: str
    epochs: int = 2
    steps_per_epoch: int = 15
    model_cfg: dict = field(default_factory=dict)
    lr: float = 3.5e-4

    def train_values(self) -> dict:
        return {
            "preset": self.preset, "model_cfg": {"depth": DEPTH, **self.model_cfg}, "height": HEIGHT, "width": WIDTH,
            "epochs": self.epochs, "max_steps_per_epoch": self.steps_per_epoch, "batch_p": 8, "batch_k": 4,
            "lr": self.lr, "schedule": "constant", "amp": "off", "seed": 0, "eval_every": 0,
            "dataset": "synthetic",
        }


ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("baseline", "mbgn/table2/Baseline", "MBGN Table 2 Baseline: PCB six stripes, no attention"),
    ZooEntry("cbam", "mbgn/table2/Baseline+CBAM-S", "Baseline + CBAM-S spatial attention after the last four stages"),
    ZooEntry("gsrpa", "mbgn/table2/Baseline+GSRPA", "Baseline + GSRPA after the last four stages"),
    ZooEntry("mbgn", "mbgn/table2/MBGN", "MBGN: both branches, AABS, GSRPA, M+F fusion, structure feature"),
    ZooEntry("msra", "msra/table1/MSRA", "MSRA: attribute relation mining, pose pyramid, FEM gate", lr=3.5e-4),
)}


def zoo_root() -> Path:
    from reidlab.models.backbone import default_data_dir

    return default_data_dir().parent / "runs" / "notebooks"


def zoo_backbone(progress: bool = True) -> Path:
    """The notebooks' synthetic-pretrained ResNet-18 (made on first use, in a pinned child process)."""
    from reidlab.models.backbone import default_data_dir

    from reidlab.engine.pretrain import backbone_is_current

    output = default_data_dir() / "pretrained" / "notebooks" / f"resnet{DEPTH}-synthetic.pth"
    if not backbone_is_current(output, ZOO_PRETRAIN):
        print(f"notebook models: pretraining their shared ResNet-{DEPTH} backbone once ({ZOO_PRETRAIN.epochs} "
              f"epochs over {ZOO_PRETRAIN.num_ids // 2} synthetic identities) -> {output}", flush=True)
        # force: the file and run folder are the zoo's own; an older zoo's backbone (other settings) is replaced
        _run_pinned({"kind": "pretrain", "settings": dataclasses.asdict(ZOO_PRETRAIN), "output": str(output),
                     "run_dir": str(zoo_root() / "pretrain"), "progress": True, "force": output.exists()})
    return output


def _run_pinned(job: dict) -> None:
    """Run one zoo job (:func:`_job`) in a child process under :mod:`reidlab.pin` (float32, AVX2
    kernels, :data:`ZOO_THREADS` threads), so that the zoo is the same on every x86-64 CPU whoever
    starts it: ``make zoo``, a notebook in JupyterLab, papermill. Its output (progress bars
    included) is passed on to this process's stdout as it comes, so a notebook cell shows it."""
    import subprocess
    import sys

    from reidlab.pin import pinned_env

    command = [sys.executable, "-m", "reidlab.zoo", "--job", json.dumps(job)]
    child = subprocess.Popen(command, env=pinned_env(ZOO_THREADS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for chunk in iter(lambda: child.stdout.read1(4096), b""):
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        child.wait()  # the child saw Ctrl-C too: it stops at a step boundary with a checkpoint
        raise
    if child.wait() != 0:
        raise RuntimeError(f"the notebook-model job {job.get('name', job['kind'])!r} failed in its child process "
                           f"(exit {child.returncode}; its output is above)")


def _job(job: dict) -> None:
    """What a pinned child process runs: the zoo's pretraining, or the training of one entry."""
    import torch

    from reidlab.pin import describe, is_pinned

    if not is_pinned():
        raise RuntimeError("zoo jobs run under reidlab.pin only (python -m reidlab.pin --threads 2 ...)")
    torch.set_num_threads(ZOO_THREADS)
    print(f"   ({describe()})", flush=True)
    if job["kind"] == "pretrain":
        from reidlab.engine.pretrain import pretrain_backbone

        pretrain_backbone(PretrainSettings(**job["settings"]), output=job["output"], run_dir=job["run_dir"],
                          progress=job["progress"], force=job.get("force", False))
        return
    from reidlab.config import TrainConfig
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.checkpoint import atomic_write_text
    from reidlab.engine.trainer import Trainer

    cfg = TrainConfig.from_dict(job["config"])
    start = time.perf_counter()
    result = Trainer(cfg, split=load_synthetic(cfg.data_root)).fit()
    if not result.completed:
        raise SystemExit(f"training of {job['name']!r} stopped ({result.status}); call again to continue")
    metrics = {k: float(result.metrics[k]) for k in ("rank1", "mAP", "mINP")} if result.metrics else {}
    atomic_write_text(json.dumps({"config": _settings(cfg.to_dict()), "metrics": metrics,
                                  "train_seconds": time.perf_counter() - start}, indent=2),
                      Path(cfg.output_dir) / "zoo.json")


def zoo_config(name: str, data_root: str | Path | None = None):
    """The :class:`~reidlab.config.TrainConfig` of zoo entry ``name`` (its backbone file must exist)."""
    from reidlab.config import TrainConfig
    from reidlab.models.backbone import default_data_dir

    entry = _entry(name)
    values = entry.train_values()
    values["model_cfg"]["pretrained"] = str(default_data_dir() / "pretrained" / "notebooks" / f"resnet{DEPTH}-synthetic.pth")
    values["data_root"] = str(data_root or default_data_dir() / "synthetic")
    values["output_dir"] = str(zoo_root() / name)
    return TrainConfig.from_dict(values)


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ValueError(f"no zoo model {name!r}; known: {sorted(ZOO)}")
    return ZOO[name]


_RUN_FLAGS = ("resume", "overwrite", "progress", "time_limit", "precision_used")


def _settings(values: dict) -> dict:
    """What a zoo run trains, as a dict: without the flags that say how it was started and without
    where things lie (output and data folders, the backbone file's folder), so that the same
    working tree reached by another path (a copy, a link) finds its models trained."""
    values = json.loads(json.dumps(values))  # tuples -> lists, as read back from a file
    kept = {k: v for k, v in values.items() if k not in (*_RUN_FLAGS, "output_dir", "data_root")}
    model_cfg = dict(kept.get("model_cfg") or {})
    if isinstance(model_cfg.get("pretrained"), str):
        model_cfg["pretrained"] = Path(model_cfg["pretrained"]).name
    kept["model_cfg"] = model_cfg
    return kept


def _finished(cfg) -> bool:
    done = Path(cfg.output_dir) / "zoo.json"
    return done.exists() and _settings(json.loads(done.read_text()).get("config", {})) == _settings(cfg.to_dict())


def zoo_checkpoint(name: str, progress: bool = True) -> Path:
    """Train zoo entry ``name`` unless its finished run is already in ``runs/notebooks/NAME``; the run folder.

    Training runs in a pinned child process (:func:`_run_pinned`) and always shows its progress (it
    happens once; ``progress`` is kept for the callers' signature). A run whose settings changed is
    trained again (the folder is the zoo's own); a stopped one (Ctrl-C) continues where it was."""
    from reidlab.engine.checkpoint import CHECKPOINT_NAME

    zoo_backbone(progress=progress)
    cfg = zoo_config(name)
    folder = Path(cfg.output_dir)
    if _finished(cfg):
        return folder
    partial = (folder / CHECKPOINT_NAME).exists()
    same = partial and (folder / "config.json").exists() and \
        _settings(json.loads((folder / "config.json").read_text())) == _settings(cfg.to_dict())
    (folder / "zoo.json").unlink(missing_ok=True)
    cfg = dataclasses.replace(cfg, resume=same, overwrite=partial and not same, progress=True)
    print(f"notebook models: training {name!r} ({_entry(name).what}): {cfg.epochs * cfg.max_steps_per_epoch} steps "
          f"of {cfg.batch_p * cfg.batch_k} images at {cfg.height}x{cfg.width}, then its evaluation -> {folder} "
          "(once; later runs load it)", flush=True)
    _run_pinned({"kind": "train", "name": name, "config": cfg.to_dict()})
    if not _finished(cfg):
        raise RuntimeError(f"training of {name!r} ended without its record {folder / 'zoo.json'}")
    return folder


def zoo_model(name: str, trained: bool = True, progress: bool = True, device: str = "cpu"):
    """``(model, split)`` for zoo entry ``name``: trained (made on first use) or the same network
    before training (same seed, same pretrained backbone, fresh paper modules). Eval mode."""
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.trainer import load_checkpoint_model, merge_model_kwargs, model_kwargs_for, seed_everything
    from reidlab.models import build_model

    if trained:
        folder = zoo_checkpoint(name, progress=progress)
        cfg = zoo_config(name)
        split = load_synthetic(cfg.data_root)
        model, _ = load_checkpoint_model(folder, device=device, split=split)
        return model, split
    zoo_backbone(progress=progress)
    cfg = zoo_config(name)
    split = load_synthetic(cfg.data_root)
    seed_everything(cfg.seed)  # as the Trainer does before building: the trained model's starting point
    model = build_model(cfg.model, **merge_model_kwargs(cfg, model_kwargs_for(cfg.model, split, input_size=(cfg.height, cfg.width))))
    return model.to(device).eval(), split


def zoo_metrics(name: str) -> dict:
    """rank-1 / mAP / mINP of the trained entry on the synthetic test set (after :func:`zoo_checkpoint`)."""
    return json.loads((zoo_root() / name / "zoo.json").read_text())["metrics"]


def zoo_table() -> pd.DataFrame:
    """One row per zoo entry: preset, what it is, its schedule, whether it is trained, its figures."""
    rows = []
    for name, entry in ZOO.items():
        done = zoo_root() / name / "zoo.json"
        metrics = json.loads(done.read_text())["metrics"] if done.exists() else {}
        rows.append({"name": name, "preset": entry.preset, "what": entry.what,
                     "steps": entry.epochs * entry.steps_per_epoch, "trained": done.exists(),
                     **{k: round(100 * v, 1) for k, v in metrics.items()}})
    return pd.DataFrame(rows).set_index("name")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m reidlab.zoo", description="Train the notebook models "
                                     "that are not trained yet (runs/notebooks/), and print the zoo's table.")
    parser.add_argument("names", nargs="*", help=f"entries to make (default: all of {', '.join(ZOO)})")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # one job, in the pinned child process
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.job:
        _job(json.loads(args.job))
        return 0
    for name in args.names:
        if name not in ZOO:
            parser.error(f"no zoo model {name!r}; known: {', '.join(ZOO)}")
    for name in args.names or ZOO:
        zoo_checkpoint(name)
    print(zoo_table().to_string())
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
