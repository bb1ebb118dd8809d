"""Data: loaders that all return a :class:`ReIDSplit` of :class:`ImageRecord` lists.

``load_dataset(name, root, **kw)`` picks the loader by name. The torch side
(``ReIDDataset``, ``build_transforms``, ``PKSampler``) and the synthetic generator
are imported lazily, so this package imports without them.
"""
from __future__ import annotations

import importlib

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


def load_dataset(name: str, root=None, **kw) -> ReIDSplit:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) from ``root``; ``kw`` go to its loader.

    ``root`` may be omitted only for ``synthetic`` (its default folder is data/synthetic).
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _LOADERS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if root is None and key != "synthetic":
        raise ValueError(f"load_dataset: dataset {name!r} needs a root folder")
    return _LOADERS[key](root, **kw)


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
    "coco17_to_openpose18", "load_cuhk01", "load_cuhk03", "load_dataset", "load_dukemtmc",
    "load_folder", "load_market1501", "openpose18_to_coco17", "parse_market_name",
    "read_attribute_file", "read_image", "read_pose_csv", "relabel", "verify_images",
    "write_attribute_file", "write_pose_csv",
]
