"""Data: loaders that all return a :class:`ReIDSplit` of :class:`ImageRecord` lists.

``load_dataset(name, root, **kw)`` picks the loader by name. The torch side
(``ReIDDataset``, ``build_transforms``, ``PKSampler``) and the synthetic generator
are imported lazily, so this package imports without them.
"""
from __future__ import annotations

import importlib
import os
import re

from .attributes import DUKE_ATTRIBUTES, MARKET_ATTRIBUTES, read_attribute_file, write_attribute_file
from .cuhk01 import load_cuhk01
from .cuhk03 import load_cuhk03
from .dukemtmc import load_dukemtmc
from .folder import load_folder
from .images import ImageReadError, read_image, verify_images
from .keypoints import coco17_to_openpose18, openpose18_to_coco17, read_pose_csv, write_pose_csv
from .market1501 import load_market1501, parse_market_name
from .records import (
    COCO17_FLIP_PAIRS,
    COCO17_NAMES,
    AttributeSpec,
    ImageRecord,
    ReIDSplit,
    relabel,
)


def _load_synthetic(root=None, **kw):
    from .synthetic import load_synthetic

    return load_synthetic(root, **kw) if root is not None else load_synthetic(**kw)


_LOADERS = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03": load_cuhk03,
    "cuhk01": load_cuhk01,
    "folder": load_folder,
    "synthetic": _load_synthetic,
}
_ALIASES = {
    "market": "market1501", "market-1501": "market1501", "market_1501": "market1501",
    "duke": "dukemtmc", "dukemtmc-reid": "dukemtmc", "dukemtmcreid": "dukemtmc",
    "cuhk03-np": "cuhk03", "cuhk03np": "cuhk03", "cuhk-03": "cuhk03", "cuhk-01": "cuhk01",
}
DATASET_NAMES = tuple(_LOADERS)


def load_dataset(name: str, root=None, generate: bool = True, **kw) -> ReIDSplit:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) from ``root``; ``kw`` go to its loader.

    ``root`` may be omitted only for ``synthetic`` (its default folder is data/synthetic).
    ``generate`` concerns ``synthetic`` alone: True generates the dataset when ``root``
    holds none (never over a folder the generator did not make); False never writes
    and a missing dataset is a ``FileNotFoundError`` (use it for paths taken from a
    checkpoint or a config file).
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _LOADERS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if root is None and key != "synthetic":
        raise ValueError(f"load_dataset: dataset {name!r} needs a root folder")
    if key == "synthetic":
        kw.setdefault("generate_if_missing", generate)
    return _LOADERS[key](root, **kw)


_MARKET_SEQUENCE_NAME = re.compile(r"^-?\d+_c\d+s\d+_")  # Market: 0002_c1s1_000451_03.jpg
_DUKE_FRAME_NAME = re.compile(r"^-?\d+_c\d+_f\d+")  # Duke: 0001_c2_f0046182.jpg


def detect_dataset(root) -> str | None:
    """The :func:`load_dataset` name for the layout found in ``root``, or None.

    Cheap (a few directory listings): the generator's marker -> ``"synthetic"``;
    CUHK03-NP protocol ``.mat`` files or ``labeled``/``detected`` Market-style folders
    -> ``"cuhk03"``; the Market layout -> ``"market1501"`` (Market file names or
    ``market_attribute.mat``), ``"dukemtmc"`` (Duke names or ``duke_attribute.mat``)
    or ``"folder"`` (other names); ``NNNNIII.png`` images -> ``"cuhk01"``.
    """
    from itertools import islice
    from pathlib import Path

    from .cuhk01 import _CUHK01_NAME
    from .cuhk03 import VARIANTS, protocol_file_name
    from .images import is_image_file
    from .market1501 import SPLIT_FOLDERS, find_layout_root

    root = Path(root)
    if not root.is_dir():
        return None
    from .synthetic import read_marker

    if read_marker(root) is not None:
        return "synthetic"
    train_folder = SPLIT_FOLDERS["train"]
    if any((root / protocol_file_name(v)).is_file() for v in VARIANTS) or any(
        (base / v / train_folder).is_dir() for v in VARIANTS for base in (root, root / "cuhk03-np")
    ):
        return "cuhk03"
    try:
        layout_root = find_layout_root(root)
    except FileNotFoundError:
        layout_root = None
    if layout_root is not None:
        for folder in dict.fromkeys((layout_root, root)):
            if (folder / "market_attribute.mat").is_file():
                return "market1501"
            if (folder / "duke_attribute.mat").is_file():
                return "dukemtmc"
        with os.scandir(layout_root / train_folder) as entries:
            names = [e.name for e in islice((e for e in entries if is_image_file(e.name)), 20)]
        if names and all(_MARKET_SEQUENCE_NAME.match(n) for n in names):
            return "market1501"
        if names and all(_DUKE_FRAME_NAME.match(n) for n in names):
            return "dukemtmc"
        return "folder"
    folder = root / "campus" if (root / "campus").is_dir() else root
    with os.scandir(folder) as entries:
        names = [e.name for e in islice((e for e in entries if is_image_file(e.name)), 20)]
    if names and all(_CUHK01_NAME.match(n) for n in names):
        return "cuhk01"
    return None


# Names provided by the other data modules, imported on first use.
_LAZY = {
    "ReIDDataset": "dataset",
    "build_transforms": "transforms",
    "PKSampler": "sampler",
    "load_synthetic": "synthetic",
    "make_synthetic_dataset": "synthetic",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AttributeSpec", "COCO17_FLIP_PAIRS", "COCO17_NAMES", "DATASET_NAMES", "DUKE_ATTRIBUTES",
    "ImageReadError", "ImageRecord", "MARKET_ATTRIBUTES", "ReIDSplit",
    "coco17_to_openpose18", "detect_dataset", "load_cuhk01", "load_cuhk03", "load_dataset", "load_dukemtmc",
    "load_folder", "load_market1501", "openpose18_to_coco17", "parse_market_name",
    "read_attribute_file", "read_image", "read_pose_csv", "relabel", "verify_images",
    "write_attribute_file", "write_pose_csv",
]
