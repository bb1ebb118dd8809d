"""Short CPU training runs on the built-in synthetic data: the figures the README quotes.

Trains a preset (small: ResNet-18 at 128x64, from scratch) through the engine,
evaluates rank-1 / mAP against a random ranking, and for attribute models (MSRA)
the attribute accuracy against the majority class. Prints and saves JSON under
``benchmarks/results/train_synthetic_<tag>.json``.

    python benchmarks/train_synthetic.py --preset mbgn/table2/MBGN --epochs 6
    python benchmarks/train_synthetic.py --preset msra/table1/MSRA --epochs 6
    python benchmarks/train_synthetic.py --preset mbgn/table2/Baseline --epochs 6

The settings are deliberately small so that a run takes minutes on 2 CPU cores;
the same command with ``--depth 50 --height 384 --width 128`` and many more
epochs is the paper-size run for a GPU.
"""
from __future__ import annotations

import argparse
import time

from common import save_results  # benchmarks/common.py

from reidlab.config import TrainConfig
from reidlab.data.synthetic import load_synthetic
from reidlab.engine.evaluate import attribute_accuracy, chance_level
from reidlab.engine.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", required=True, help="e.g. mbgn/table2/MBGN, msra/table1/MSRA, baseline/bnneck")
    parser.add_argument("--data-root", default="data/synthetic")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=25)
    parser.add_argument("--depth", type=int, default=18)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch-p", type=int, default=8)
    parser.add_argument("--batch-k", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3.5e-4, help="constant; the paper schedules need full-length runs")
    parser.add_argument("--model-cfg", default="{}", help="extra model arguments as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tag", default=None, help="results file suffix (default: from the preset)")
    parser.add_argument("--drop-query-keypoints", action="store_true",
                        help="remove the query images' keypoints (as the Market release without the 14-point file)")
    parser.add_argument("--amp", default="off", help="auto, bf16, off (default: off, float32)")
    parser.add_argument("--pretrained", default="false",
                        help="backbone start: false (from scratch), synthetic, or a weight file")
    parser.add_argument("--lr-mult", default="{}", help='per-prefix lr multipliers as JSON, e.g. {"attention.": 10}')
    args = parser.parse_args()

    import dataclasses
    import json

    split = load_synthetic(args.data_root)
    if args.drop_query_keypoints:
        split = dataclasses.replace(split, query=[dataclasses.replace(r, keypoints=None) for r in split.query])
    cfg = TrainConfig.from_preset(
        args.preset,
        dataset="synthetic", data_root=args.data_root,
        model_cfg={**TrainConfig.from_preset(args.preset).model_cfg, "depth": args.depth,
                   "pretrained": False if args.pretrained == "false" else args.pretrained,
                   **json.loads(args.model_cfg)},
        lr_mult=json.loads(args.lr_mult),
        height=args.height, width=args.width, epochs=args.epochs, max_steps_per_epoch=args.steps_per_epoch,
        batch_p=args.batch_p, batch_k=args.batch_k, lr=args.lr, schedule="constant", warmup_epochs=0,
        eval_every=0, seed=args.seed, device=args.device, num_workers=2, amp=args.amp,
        allow_missing=args.drop_query_keypoints,
        output_dir=f"runs/train_synthetic/{args.tag or args.preset.replace('/', '_')}_seed{args.seed}",
        overwrite=True,  # the script's own run folder under runs/train_synthetic
    )
    start = time.perf_counter()
    result = train(cfg, split=split)
    seconds = time.perf_counter() - start
    chance = chance_level(split)
    figures = {
        "preset": args.preset,
        "config": cfg.to_dict(),
        "dataset": repr(split),
        "train_seconds_incl_eval": round(seconds, 1),
        "images_seen": args.epochs * args.steps_per_epoch * args.batch_p * args.batch_k,
        "rank1": result.metrics["rank1"], "rank5": result.metrics["rank5"],
        "mAP": result.metrics["mAP"], "mINP": result.metrics["mINP"],
        "chance_rank1": chance["rank1"], "chance_mAP": chance["mAP"],
    }
    print(f"{args.preset}: rank-1 {100 * figures['rank1']:.1f}% (chance {100 * chance['rank1']:.2f}%), "
          f"mAP {100 * figures['mAP']:.1f}% (chance {100 * chance['mAP']:.2f}%), {seconds:.0f} s")
    if getattr(result.model, "explain", None) is not None and cfg.model == "msra":
        table = attribute_accuracy(result.model, split.query + split.gallery, split.attribute_spec, split.train,
                                   args.height, args.width, device=args.device)
        figures["attribute_accuracy_mean"] = float(table["accuracy"].mean())
        figures["attribute_majority_mean"] = float(table["majority_accuracy"].mean())
        figures["attributes_above_majority"] = int((table["accuracy"] > table["majority_accuracy"]).sum())
        figures["attribute_table"] = table.round(4).reset_index().to_dict(orient="records")
        print(table.round(3).to_string())
        print(f"attribute accuracy {figures['attribute_accuracy_mean']:.3f} vs majority "
              f"{figures['attribute_majority_mean']:.3f} ({figures['attributes_above_majority']}/{len(table)} above)")
    suffix = f"_seed{args.seed}" if args.seed else ""
    save_results(f"train_synthetic_{args.tag or args.preset.replace('/', '_')}{suffix}", figures)


if __name__ == "__main__":
    main()
