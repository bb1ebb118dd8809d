"""MBGN Table 2 with seeds, from scratch and from the synthetic-pretrained backbone: the README's table.

Reads finished ablation batches (``reidlab ablate``) and prints one Markdown table: per start and
setting (the preset's row and what a run's batch entry changed), rank-1 and mAP as mean +- std over
seeds (%), the number of seeds, the mean training time per run and the paper's Market-1501 figures.
Saves ``benchmarks/results/mbgn_table2.json``.

    python benchmarks/mbgn_table2.py --start scratch runs/ablation/mbgn-table2 runs/ablation/mbgn-table2-seed2 \
                                     --start pretrained runs/ablation/mbgn-table2-pretrained
"""
from __future__ import annotations

import argparse
import json

import pandas as pd

from common import RESULTS_DIR, machine_info  # benchmarks/common.py

from reidlab.ablation import collect
from reidlab.viz.dashboard import run_setting

ORDER = ("Baseline", "Baseline+G", "Baseline+AABS", "Baseline+GSRPA", "Baseline+CBAM-S", "MBGN")


def table_of(starts: dict[str, list[str]]) -> pd.DataFrame:
    """One row per (start, setting): mean and std over seeds of rank-1 and mAP, seeds, seconds, the paper's."""
    frames = []
    for start, folders in starts.items():
        for folder in folders:
            runs = collect(folder, save=False)
            runs = runs[runs["status"] == "ok"].copy()
            runs["start"], runs["setting"] = start, [run_setting(r) for _, r in runs.iterrows()]
            frames.append(runs)
    runs = pd.concat(frames, ignore_index=True)
    duplicated = runs.duplicated(["start", "setting", "seed"], keep=False)
    if duplicated.any():
        raise SystemExit(f"the same setting and seed twice: {runs.loc[duplicated, 'run'].tolist()}")
    grouped = runs.groupby(["start", "setting"], sort=False)
    table = grouped.agg(rank1=("rank1", "mean"), rank1_std=("rank1", "std"), mAP=("mAP", "mean"),
                        mAP_std=("mAP", "std"), seeds=("seed", "count"), train_seconds=("train_seconds", "mean"),
                        paper_rank1=("paper_rank1", "first"), paper_mAP=("paper_mAP", "first")).reset_index()
    row = table["setting"].str.split(" ").str[0]
    table["_order"] = [ORDER.index(r) if r in ORDER else len(ORDER) for r in row]
    table["_variant"] = table["setting"].str.contains(" ")
    starts_order = {s: k for k, s in enumerate(starts)}
    table["_start"] = table["start"].map(starts_order)
    return table.sort_values(["_start", "_order", "_variant"]).drop(columns=["_order", "_variant", "_start"])


def markdown(table: pd.DataFrame) -> str:
    lines = ["| start | setting | rank-1 % | mAP % | seeds | train s/run | paper (Market) |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        paper = f"{r.paper_rank1:.1f} / {r.paper_mAP:.1f}" if pd.notna(r.paper_rank1) else ""
        lines.append(f"| {r.start} | {r.setting} | {r.rank1:.1f} ± {r.rank1_std:.1f} | {r.mAP:.1f} ± {r.mAP_std:.1f} "
                     f"| {r.seeds} | {r.train_seconds:.0f} | {paper} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", nargs="+", action="append", required=True, metavar=("NAME", "BATCH"),
                        help="a start's name and its batch folders; give --start once per start")
    args = parser.parse_args()
    starts = {}
    for name, *folders in args.start:
        if not folders:
            raise SystemExit(f"--start {name}: give at least one batch folder")
        starts[name] = folders
    table = table_of(starts)
    print(markdown(table))
    path = RESULTS_DIR / "mbgn_table2.json"
    path.write_text(json.dumps({"benchmark": "mbgn_table2", "machine": machine_info(), "batches": starts,
                                "rows": json.loads(table.to_json(orient="records"))}, indent=1))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
