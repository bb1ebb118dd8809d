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
