"""CUHK01 (Li et al., "Human reidentification with transferred metric learning",
ACCV 2012): 971 identities x 4 images from two cameras, 60 x 160 PNG crops.

File ``NNNNIII.png``: identity ``NNNN``, image ``III``; images 001-002 are camera A
(camid 0), 003-004 camera B (camid 1). Protocol: a random 485/486 identity split;
query = the test identities' camera-A images, gallery = their camera-B images.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .images import is_image_file
from .records import ImageRecord, ReIDSplit, relabel

_CUHK01_NAME = re.compile(r"^(\d{4})(\d{3})\.(png|jpg|jpeg|bmp)$", re.IGNORECASE)


def parse_cuhk01_name(name: str | os.PathLike) -> tuple[int, int]:
    """``(pid, camid)`` of ``NNNNIII.png``: camera A (0) for images 1-2, B (1) for 3-4."""
    match = _CUHK01_NAME.match(os.path.basename(str(name)))
    if match is None or not 1 <= int(match.group(2)) <= 4:
        raise ValueError(f"cannot parse CUHK01 file name {name}: expected NNNNIII.png with image III in 001..004")
    return int(match.group(1)), 0 if int(match.group(2)) <= 2 else 1


def load_cuhk01(root, num_train_ids: int = 485, seed: int = 0, name: str = "cuhk01") -> ReIDSplit:
    """CUHK01 with a seeded random identity split (``num_train_ids`` train, rest test)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"cuhk01: dataset folder not found: {root}")
    folder = root / "campus" if (root / "campus").is_dir() else root  # the archive unpacks to campus/
    all_records = []
    for file_name in sorted(os.listdir(folder)):
        if is_image_file(file_name):
            pid, camid = parse_cuhk01_name(folder / file_name)
            all_records.append(ImageRecord(str(folder / file_name), pid, camid))
    pids = np.array(sorted({r.pid for r in all_records}))
    if len(pids) == 0:
        raise ValueError(f"cuhk01: no NNNNIII.png images in {folder}")
    if not 0 < num_train_ids < len(pids):
        raise ValueError(f"load_cuhk01: num_train_ids must be in 1..{len(pids) - 1}, got {num_train_ids}")
    shuffled = np.random.default_rng(seed).permutation(pids)
    train_pids = set(shuffled[:num_train_ids].tolist())
    train = [r for r in all_records if r.pid in train_pids]
    query = [r for r in all_records if r.pid not in train_pids and r.camid == 0]
    gallery = [r for r in all_records if r.pid not in train_pids and r.camid == 1]
    return ReIDSplit(name, relabel(train), query, gallery, None, str(folder))
