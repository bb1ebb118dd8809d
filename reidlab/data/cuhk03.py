"""CUHK03 (Li et al., CVPR 2014) under the new protocol CUHK03-NP (Zhong et al.,
"Re-ranking person re-identification with k-reciprocal encoding", CVPR 2017):
767 training identities, 700 test identities.

Two forms are accepted, detected from what is in ``root``:

1. Market style: ``ROOT/{labeled,detected}/{bounding_box_train,bounding_box_test,query}``
   (also ``ROOT/cuhk03-np/...`` or ``ROOT`` being the variant folder itself).
2. The PNG release: images named ``1_001_1_01.png`` (camera pair, identity in the
   pair, view, image) plus ``cuhk03_new_protocol_config_{labeled,detected}.mat``
   with ``filelist``, ``labels``, ``camId`` and 1-based ``train_idx``/``query_idx``/
   ``gallery_idx``. Images are looked for in ``images_{variant}``, ``imgs_{variant}``,
   ``{variant}`` and ``ROOT`` itself.

Choice: ``camid`` is the view (``camId`` - 1, i.e. 0/1), as in the protocol's own
evaluation code; the camera pair is kept in ``extra["camera_pair"]``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .market1501 import SPLIT_FOLDERS, load_market_layout
from .records import ImageRecord, ReIDSplit, relabel

VARIANTS = ("labeled", "detected")


def protocol_file_name(variant: str) -> str:
    return f"cuhk03_new_protocol_config_{variant}.mat"


def read_protocol_file(path: str | os.PathLike) -> dict:
    """The CUHK03-NP ``.mat`` as ``{"filelist": [str], "labels": (N,), "camId": (N,),
    "train_idx"/"query_idx"/"gallery_idx": 0-based (M,) int64}``."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CUHK03-NP protocol file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for non-.mat input
        raise ValueError(f"cannot read CUHK03-NP protocol file {path} as a MATLAB v5 .mat: {error}") from error
    required = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
    missing = [k for k in required if k not in mat]
    if missing:
        raise ValueError(f"CUHK03-NP protocol file {path} lacks {missing}")
    filelist = [str(np.asarray(item).ravel()[0]).strip() for item in mat["filelist"].ravel()]
    out = {
        "filelist": filelist,
        "labels": mat["labels"].ravel().astype(np.int64),
        "camId": mat["camId"].ravel().astype(np.int64),
    }
    for key in ("train_idx", "query_idx", "gallery_idx"):
        index = mat[key].ravel().astype(np.int64) - 1  # MATLAB indices are 1-based
        if index.size and (index.min() < 0 or index.max() >= len(filelist)):
            raise ValueError(f"CUHK03-NP protocol file {path}: {key} outside 1..{len(filelist)}")
        out[key] = index
    if not (len(out["labels"]) == len(out["camId"]) == len(filelist)):
        raise ValueError(f"CUHK03-NP protocol file {path}: filelist, labels and camId differ in length")
    return out


def _market_style_root(root: Path, variant: str) -> Path | None:
    for candidate in (root / variant, root / "cuhk03-np" / variant, root):
        if (candidate / SPLIT_FOLDERS["train"]).is_dir():
            return candidate
    return None


def _find_image_folder(root: Path, variant: str, first_file: str) -> Path:
    candidates = [root / f"images_{variant}", root / f"imgs_{variant}", root / variant, root]
    for folder in candidates:
        if (folder / first_file).is_file():
            return folder
    raise FileNotFoundError(
        f"cuhk03: cannot find the {variant} images (e.g. {first_file}) in any of "
        f"{[str(c) for c in candidates]}"
    )


def load_cuhk03(root, variant: str = "labeled", name: str | None = None) -> ReIDSplit:
    """CUHK03-NP ``labeled`` or ``detected`` in either form (see module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"load_cuhk03: variant must be one of {VARIANTS}, got {variant!r}")
    root = Path(root)
    name = name or f"cuhk03_{variant}"
    if not root.is_dir():
        raise FileNotFoundError(f"cuhk03: dataset folder not found: {root}")

    market_root = _market_style_root(root, variant)
    if market_root is not None:
        return load_market_layout(market_root, name, None, None, None, None)

    protocol_path = root / protocol_file_name(variant)
    if not protocol_path.is_file():
        raise FileNotFoundError(
            f"cuhk03: {root} holds neither the Market-style CUHK03-NP folders "
            f"({variant}/bounding_box_train, ...) nor {protocol_path.name}"
        )
    protocol = read_protocol_file(protocol_path)
    filelist = protocol["filelist"]
    folder = _find_image_folder(root, variant, filelist[protocol["train_idx"][0]])
    present = set(os.listdir(folder))
    used = np.concatenate([protocol[k] for k in ("train_idx", "query_idx", "gallery_idx")])
    missing = sorted({filelist[i] for i in used} - present)
    if missing:
        raise FileNotFoundError(
            f"cuhk03: {len(missing)} images listed in {protocol_path.name} are missing from {folder} "
            f"(e.g. {missing[:5]})"
        )

    def records(key: str) -> list[ImageRecord]:
        out = []
        for i in protocol[key]:
            file_name = filelist[i]
            out.append(
                ImageRecord(
                    str(folder / file_name),
                    int(protocol["labels"][i]),
                    int(protocol["camId"][i]) - 1,
                    extra={"camera_pair": int(file_name.split("_")[0])},
                )
            )
        return out

    return ReIDSplit(name, relabel(records("train_idx")), records("query_idx"), records("gallery_idx"), None, str(root))
