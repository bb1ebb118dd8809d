"""Benchmark: CMC + mAP + mINP from a Market-1501-size distance matrix.

3,368 queries x 15,913 gallery, 751 ids, 6 cameras, 2,793 distractors (pid 0); synthetic
clustered 512-d features (benchmarks/common.py) so that the ranks are realistic
(rank-1 ~0.97, mAP ~0.78, mINP ~0.33). Target: under 0.5 s on a 2-core CPU. Also times a
plain per-query numpy loop (stable argsort) on a subset, checks that both agree there, and
extrapolates its time to the full query set.

    .venv/bin/python benchmarks/bench_metrics.py [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import best_of, market_like_split, save_results  # noqa: E402
from reidlab.engine.distance import pairwise_distance  # noqa: E402
from reidlab.engine.metrics import evaluate_ranking  # noqa: E402


def numpy_loop(distmat, q_pids, g_pids, q_camids, g_camids):
    """The usual per-query evaluation (argsort every row), for timing and agreement."""
    aps, inps, first = [], [], []
    for i in range(len(q_pids)):
        valid = (g_pids != -1) & ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        matches = g_pids[valid][np.argsort(distmat[i][valid], kind="stable")] == q_pids[i]
        ranks = np.flatnonzero(matches) + 1
        if len(ranks):
            aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
            inps.append(len(ranks) / ranks[-1])
            first.append(ranks[0])
    return float(np.mean(aps)), float(np.mean(inps)), float(np.mean(np.array(first) == 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subset", type=int, default=300, help="queries timed with the numpy loop")
    args = parser.parse_args()
    qf, gf, q_pids, g_pids, q_camids, g_camids = market_like_split(dim=512)
    distmat = pairwise_distance(qf.to(args.device), gf.to(args.device))
    figures = {"num_query": distmat.shape[0], "num_gallery": distmat.shape[1], "feature_dim": 512,
               "load_average_1min_start": round(os.getloadavg()[0], 2)}
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        seconds, result = best_of(lambda: evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids), args.repeats)
        figures[f"evaluate_ranking_seconds_best_of_{args.repeats}_threads_{threads}"] = round(seconds, 4)
    torch.set_num_threads(default_threads)
    figures.update({key: round(result[key], 4) for key in ("rank1", "rank5", "rank10", "mAP", "mINP")})

    subset = slice(0, args.subset)
    host = distmat.cpu().numpy()
    start = time.perf_counter()
    loop_map, loop_minp, loop_rank1 = numpy_loop(host[subset], q_pids[subset], g_pids, q_camids[subset], g_camids)
    loop_seconds = time.perf_counter() - start
    fast = evaluate_ranking(distmat[subset], q_pids[subset], g_pids, q_camids[subset], g_camids)
    figures["numpy_loop_seconds_extrapolated"] = round(loop_seconds * distmat.shape[0] / args.subset, 2)
    figures["agrees_with_numpy_loop_on_subset"] = bool(
        abs(fast["mAP"] - loop_map) < 1e-12 and abs(fast["mINP"] - loop_minp) < 1e-12 and fast["rank1"] == loop_rank1
    )
    figures["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    save_results("bench_metrics", figures, args.device)


if __name__ == "__main__":
    main()
