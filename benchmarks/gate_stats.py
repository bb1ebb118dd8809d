"""What the trained attention gates do: per run of an ablation batch, the gate statistics of MBGN issue 10.

For every run folder under the given batch folders whose model has spatial attention (GSRPA or
CBAM-S), the trained checkpoint is loaded and ``explain()`` is run on the occluded test images of
the synthetic data (query + gallery, the images that carry an occluder mask). Per attention stage:

- ``mean``: the gate's mean value (sigmoid of Eq. 7, in (0, 1));
- ``spatial_std``: the standard deviation of the gate over the positions of one image, averaged
  over the images (0 = the gate is a constant, i.e. it attends to nothing in particular);
- ``occluder_ratio``: the share of the gate's mass inside the occluder mask divided by the mask's
  area (:func:`reidlab.viz.cam.occluder_share_table`): 1 = no preference, < 1 = avoids the occluder.

The same figures for the untrained model of each configuration (the first run's config, built as
the run built it, before its first step) are the ``init`` rows: how far training moved the gates.
An untrained model's BN running statistics are the identity (mean 0, variance 1), which in eval
mode saturates the deep gates; the ``init`` rows therefore first re-estimate them on the images
in train mode (no weight changes), so that they show the gates as the first training step sees them.

    python benchmarks/gate_stats.py runs/ablation/mbgn-table2 runs/ablation/mbgn-table2-pretrained

Prints a table and saves ``benchmarks/results/gate_stats.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import RESULTS_DIR, machine_info  # benchmarks/common.py

from reidlab.data import load_dataset
from reidlab.engine.trainer import load_checkpoint_model
from reidlab.viz.cam import load_mask, mask_share
from reidlab.viz.dashboard import run_setting
from reidlab.viz.figures import records_batch


def gate_table(model: torch.nn.Module, records, height: int, width: int, batch_size: int = 32) -> pd.DataFrame:
    """One row per attention stage: mean, spatial std and occluder ratio of the gates on ``records``
    (one ``explain()`` per batch for all stages; the ratio as :func:`reidlab.viz.cam.occluder_share_table`'s:
    mean share inside the masks over mean mask area)."""
    gates: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(records), batch_size):
        images = records_batch(records[start: start + batch_size], height, width)["image"]
        explanation = model.explain(images)
        stages = explanation.attention if hasattr(explanation, "attention") else explanation
        for stage, details in stages.items():
            gates.setdefault(stage, []).append(details.attention[:, 0].detach().float().cpu())
    masks = [load_mask(r, (height, width)) for r in records]
    area = float(np.mean([m.mean() for m in masks]))
    rows = []
    for stage, chunks in gates.items():
        maps = torch.cat(chunks)  # (B, h, w)
        flat = maps.reshape(len(maps), -1).double()
        share = float(np.mean([mask_share(g, m) for g, m in zip(maps, masks)]))
        rows.append({"stage": stage, "mean": float(flat.mean()), "spatial_std": float(flat.std(dim=1).mean()),
                     "occluder_ratio": share / area})
    return pd.DataFrame(rows)


def fresh_model(run_dir: Path, split):
    """The run's model as it was before its first step (same config, same seed, pretrained backbone if any)."""
    from reidlab.config import TrainConfig
    from reidlab.engine.checkpoint import load_checkpoint
    from reidlab.engine.trainer import merge_model_kwargs, model_kwargs_for
    from reidlab.models import build_model

    state = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = TrainConfig.from_dict({k: v for k, v in state["cfg"].items() if k in TrainConfig.field_names()})
    torch.manual_seed(cfg.seed)
    kwargs = model_kwargs_for(cfg.model, split, num_classes=state["num_classes"], input_size=(cfg.height, cfg.width))
    return build_model(cfg.model, **merge_model_kwargs(cfg, kwargs)).eval()


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 32) -> None:
    """Re-estimate every BN layer's running statistics on ``images`` (cumulative average, train mode)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for start in range(0, len(images), batch_size):
        model(images[start: start + batch_size])
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batches", nargs="+", help="ablation batch folders (reidlab ablate --output-dir)")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--images", type=int, default=128, help="occluded test images used")
    parser.add_argument("--name", default="gate_stats", help="results file name")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    split = load_dataset("synthetic", args.data_root, generate=False)
    occluded = [r for r in split.query + split.gallery if r.extra.get("mask_path")][: args.images]
    rows, seen_configs = [], set()
    for batch in args.batches:
        for run_dir in sorted(p for p in Path(batch).iterdir() if (p / "checkpoint.pt").is_file()):
            model, cfg = load_checkpoint_model(run_dir, split=split)
            if not (hasattr(model, "attention") and len(getattr(model, "attention")) > 0):
                continue
            label = {"batch": Path(batch).name, "run": run_dir.name, "seed": cfg.seed,
                     "setting": run_setting({"preset": cfg.preset, "model": cfg.model, "run": run_dir.name})}
            with torch.no_grad():
                for row in gate_table(model, occluded, cfg.height, cfg.width).to_dict("records"):
                    rows.append({**label, "state": "trained", **row})
                config_key = (label["batch"], label["setting"])
                if config_key not in seen_configs:
                    seen_configs.add(config_key)
                    init = fresh_model(run_dir, split)
                    calibrate_batchnorm(init, records_batch(occluded, cfg.height, cfg.width)["image"])
                    for row in gate_table(init, occluded, cfg.height, cfg.width).to_dict("records"):
                        rows.append({**label, "seed": "-", "state": "init", **row})
            print(f"{run_dir.name}: done", flush=True)
    table = pd.DataFrame(rows)
    if table.empty:
        raise SystemExit("no run with spatial attention and a checkpoint in " + ", ".join(args.batches))
    grouped = (table.groupby(["batch", "setting", "state", "stage"], sort=False)
               [["mean", "spatial_std", "occluder_ratio"]].agg(["mean", "std", "count"]).round(4))
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_rows", 200):
        print(grouped)
    grouped.columns = ["_".join(c) for c in grouped.columns]
    path = RESULTS_DIR / f"{args.name}.json"
    path.write_text(json.dumps({"benchmark": args.name, "machine": machine_info(), "images": len(occluded),
                                "summary": json.loads(grouped.reset_index().to_json(orient="records")),
                                "runs": table.to_dict("records")}, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
