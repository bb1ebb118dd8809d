"""Shared helpers for the benchmark scripts: synthetic re-ID features, timing, JSON output.

Every script prints its figures and saves them, with the machine they were measured on,
to ``benchmarks/results/<name>.json``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Market-1501 evaluation split as torchreid loads it (junk pid -1 dropped from the gallery).
MARKET_QUERIES = 3368
MARKET_GALLERY = 15913
MARKET_IDS = 751
MARKET_CAMERAS = 6
MARKET_DISTRACTORS = 2793  # gallery images with pid 0


def machine_info(device: str | torch.device = "cpu") -> dict:
    """What the figures were measured on."""
    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": str(device),
    }
    from reidlab.engine.precision import cpu_summary

    info.update(cpu_summary())
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def save_results(name: str, figures: dict, device: str | torch.device = "cpu") -> Path:
    """Print ``figures`` and write them with machine info to ``benchmarks/results/<name>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(device), **figures}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=_to_json))
    from reidlab.engine.precision import cpu_line

    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    print(f"measured on: {cpu_line()}, {torch.get_num_threads()} torch thread(s)")
    print(f"saved {path}")
    return path


def _to_json(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def best_of(function, repeats: int = 3) -> tuple[float, object]:
    """Best wall time (seconds) of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def market_like_split(dim: int = 512, seed: int = 0, identity_spread: float = 1.0, camera_spread: float = 0.6,
                      noise: float = 1.7):
    """Synthetic features at Market-1501's evaluation sizes with clustered structure.

    Each identity has a random centre; each camera adds a shift; each image adds noise;
    features are L2-normalised. The spreads are chosen so that rank-1 / mAP land in a
    realistic range (neither trivial nor random). Query pids are 1..751 with one query
    per (id, camera) like Market; the gallery holds the same ids plus ``pid 0`` distractors.
    Returns ``(qf, gf, q_pids, g_pids, q_camids, g_camids)`` (torch float32, numpy int64).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(MARKET_IDS + 1, dim)) * identity_spread
    camera_shift = rng.normal(size=(MARKET_CAMERAS, dim)) * camera_spread
    q_pids = rng.integers(1, MARKET_IDS + 1, MARKET_QUERIES)
    q_pids[:MARKET_IDS] = np.arange(1, MARKET_IDS + 1)  # every id has a query
    q_camids = rng.integers(0, MARKET_CAMERAS, MARKET_QUERIES)
    labelled = MARKET_GALLERY - MARKET_DISTRACTORS
    g_pids = np.concatenate([rng.integers(1, MARKET_IDS + 1, labelled), np.zeros(MARKET_DISTRACTORS, dtype=np.int64)])
    g_camids = rng.integers(0, MARKET_CAMERAS, MARKET_GALLERY)
    distractor_centres = rng.normal(size=(MARKET_DISTRACTORS, dim)) * identity_spread

    def features(pids, camids, extra_centres=None):
        base = centres[pids].copy()
        if extra_centres is not None:
            base[pids == 0] = extra_centres
        x = base + camera_shift[camids] + rng.normal(size=base.shape) * noise
        return torch.from_numpy(x / np.linalg.norm(x, axis=1, keepdims=True)).float()

    qf = features(q_pids, q_camids)
    gf = features(g_pids, g_camids, distractor_centres)
    return qf, gf, q_pids.astype(np.int64), g_pids.astype(np.int64), q_camids.astype(np.int64), g_camids.astype(np.int64)
