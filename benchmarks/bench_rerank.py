"""Benchmark: k-reciprocal re-ranking at Market-1501 size (3,368 + 15,913 images).

Target: under 15 s and under 3 GB peak memory on a 2-core CPU (the common dense
implementation takes ~73 s and 8.7 GB). Features: synthetic clustered 512-d, L2-normalised
(benchmarks/common.py). Peak memory is this fresh process's ru_maxrss (everything it
ever held, Python and torch included).

    .venv/bin/python benchmarks/bench_rerank.py [--dim 512] [--device cpu] [--threads N]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from common import market_like_split, save_results  # noqa: E402
from reidlab.engine.distance import pairwise_distance  # noqa: E402
from reidlab.engine.metrics import evaluate_ranking  # noqa: E402
from reidlab.engine.rerank import re_ranking  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--name", default="bench_rerank")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    qf, gf, q_pids, g_pids, q_camids, g_camids = market_like_split(dim=args.dim)
    qf, gf = qf.to(args.device), gf.to(args.device)
    rss_before = peak_rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    reranked = re_ranking(qf, gf, k1=20, k2=6, lambda_value=0.3)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
    figures = {
        "num_query": len(qf),
        "num_gallery": len(gf),
        "feature_dim": args.dim,
        "k1_k2_lambda": [20, 6, 0.3],
        "torch_threads": torch.get_num_threads(),
        "rerank_seconds": round(seconds, 3),
        "rerank_cpu_seconds_all_threads": round(cpu_seconds, 3),
        "peak_rss_mb_process": round(peak_rss_mb(), 1),
        "rss_mb_before_rerank": round(rss_before, 1),
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
    }
    if args.device.startswith("cuda"):
        figures["cuda_peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    plain = evaluate_ranking(pairwise_distance(qf, gf), q_pids, g_pids, q_camids, g_camids)
    rerank = evaluate_ranking(reranked, q_pids, g_pids, q_camids, g_camids)
    for label, result in (("original", plain), ("reranked", rerank)):
        figures[f"{label}_rank1_mAP_mINP"] = [round(result[k], 4) for k in ("rank1", "mAP", "mINP")]
    save_results(args.name, figures, args.device)


if __name__ == "__main__":
    main()
