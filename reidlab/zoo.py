"""The small trained models the notebooks show: cached, seeded, made on first use.

A picture of an untrained network teaches nothing about what a paper claims, so
each notebook shows its component on an untrained and a trained model side by
side. :func:`zoo_model` gives either: the trained one from ``runs/notebooks/NAME``
(trained there on first use, with a progress bar; later calls load it), the
untrained one as the same network at the same seed before its first step.

How they are made (far from the papers' setting, and said so in every notebook):
the built-in synthetic data at 128x64, ResNet-18 from a small synthetic-pretrained
backbone (:mod:`reidlab.engine.pretrain`, ``ZOO_PRETRAIN``; the stand-in for
ImageNet), a few hundred steps of Adam on the CPU, in float32 for results that
repeat bit for bit on the same kind of machine. The papers train ResNet-50 from
ImageNet weights at 384x128 / 256x128 for 100+ epochs on the real datasets.

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
# Training threads, fixed: float sums in the backward pass depend on how work is split between
# threads, and the notebooks' stored numbers must repeat on every machine of this kind (2 cores).
ZOO_THREADS = 2
# The notebooks' own small pretraining: about 5 minutes here (the full `reidlab pretrain` is larger).
ZOO_PRETRAIN = PretrainSettings(depth=DEPTH, height=HEIGHT, width=WIDTH, num_ids=600, images_per_id=8, epochs=3, amp="off")


@dataclass(frozen=True)
class ZooEntry:
    """One notebook model: a preset (or model name) and its short training schedule."""

    name: str
    preset: str
    what: str
    epochs: int = 4
    steps_per_epoch: int = 25
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


class _threads:
    """``torch.set_num_threads(n)`` for a block, restored after."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
        return False


def zoo_backbone(progress: bool = True) -> Path:
    """The notebooks' synthetic-pretrained ResNet-18 (made on first use, about 5 minutes)."""
    from reidlab.engine.pretrain import pretrain_backbone
    from reidlab.models.backbone import default_data_dir

    folder = default_data_dir() / "pretrained" / "notebooks"
    with _threads(ZOO_THREADS):
        return pretrain_backbone(ZOO_PRETRAIN, output=folder / f"resnet{DEPTH}-synthetic.pth",
                                 run_dir=zoo_root() / "pretrain", progress=progress)


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


_RUN_FLAGS = ("resume", "overwrite", "progress")


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

    A run whose settings changed is trained again (the folder is the zoo's own); a stopped one
    (Ctrl-C) continues where it was."""
    from reidlab.data.synthetic import load_synthetic
    from reidlab.engine.checkpoint import CHECKPOINT_NAME
    from reidlab.engine.trainer import Trainer

    zoo_backbone(progress=progress)
    cfg = zoo_config(name)
    folder = Path(cfg.output_dir)
    if _finished(cfg):
        return folder
    partial = (folder / CHECKPOINT_NAME).exists()
    same = partial and (folder / "config.json").exists() and \
        _settings(json.loads((folder / "config.json").read_text())) == _settings(cfg.to_dict())
    (folder / "zoo.json").unlink(missing_ok=True)
    cfg = dataclasses.replace(cfg, resume=same, overwrite=partial and not same, progress=progress)
    split = load_synthetic(cfg.data_root)
    print(f"training the notebook model {name!r} ({_entry(name).what}): {cfg.epochs} epochs x "
          f"{cfg.max_steps_per_epoch} steps of {cfg.batch_p * cfg.batch_k} images at {cfg.height}x{cfg.width} "
          f"-> {folder} (once; later runs load it)")
    start = time.perf_counter()
    with _threads(ZOO_THREADS):
        result = Trainer(cfg, split=split).fit()
    if not result.completed:
        raise RuntimeError(f"training of {name!r} stopped ({result.status}); call again to continue")
    from reidlab.engine.checkpoint import atomic_write_text

    metrics = {k: float(result.metrics[k]) for k in ("rank1", "mAP", "mINP")} if result.metrics else {}
    atomic_write_text(json.dumps({"config": _settings(cfg.to_dict()), "metrics": metrics,
                                  "train_seconds": time.perf_counter() - start}, indent=2), folder / "zoo.json")
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


def make_all(progress: bool = True) -> pd.DataFrame:
    """Train every zoo entry that is not trained yet (``make notebooks`` runs this); the table."""
    for name in ZOO:
        zoo_checkpoint(name, progress=progress)
    return zoo_table()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(make_all().to_string())
