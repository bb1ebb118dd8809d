"""Shared fixtures: the real annotation data in ../shared/data (skipped when absent),
and a small synthetic dataset generated once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REIDLAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores, several test processes: one thread each keeps the suite predictable.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotation files and images; tests that need them skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set REIDLAB_SHARED_DATA)")
    return SHARED_DATA


def shared_file(shared_data: Path, relative: str) -> Path:
    path = shared_data / relative
    if not path.exists():
        pytest.skip(f"real data file not found: {path}")
    return path


# --- synthetic dataset fixtures (owner: data/synthetic engineer) -------------------------
SYNTHETIC_TEST_KWARGS = dict(num_ids=32, images_per_id=5, num_cameras=6, occluder_fraction=0.25, seed=0)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic dataset (16 train + 16 test ids, ~5 images each, Market layout),
    generated once per test session (about a second); returns its folder."""
    from reidlab.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "synthetic"
    return make_synthetic_dataset(root, progress=False, **SYNTHETIC_TEST_KWARGS)


@pytest.fixture(scope="session")
def synthetic_split(synthetic_root):
    """The ReIDSplit of :func:`synthetic_root` (attributes, keypoints, occluder masks)."""
    from reidlab.data.synthetic import load_synthetic

    return load_synthetic(synthetic_root, generate_if_missing=False)


def make_tiny_batch(folder, data_root, split):
    """Two one-step runs (Baseline, Baseline+GSRPA) recorded as the train notebook records them."""
    from reidlab.ablation import RunRecorder, _atomic_write_json, normalize_parameters, run_name, \
        train_config_from_params
    from reidlab.engine.trainer import Trainer

    names = []
    for preset in ("mbgn/table2/Baseline", "mbgn/table2/Baseline+GSRPA"):
        params = normalize_parameters(dict(
            preset=preset, model_cfg='{"depth": 18, "pretrained": false}', data_root=str(data_root), epochs=1,
            steps_per_epoch=1, batch_p=4, batch_k=2, seed=0, progress=False, device="cpu"))
        params["output_dir"] = str(folder / run_name(params))
        names.append(run_name(params))
        cfg = train_config_from_params(params)
        with RunRecorder(params, cfg) as run:
            result = Trainer(cfg, split=split).fit()
            run.record(result.history, result.metrics)
    _atomic_write_json({"runs": [{"name": name} for name in names]}, folder / "batch.json")
    return folder
