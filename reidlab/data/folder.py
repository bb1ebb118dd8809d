"""A user's own images, in one of two forms.

1. The Market-1501 layout and naming (``bounding_box_train``, ``bounding_box_test``,
   ``query``; ``PID_cCAM_anything.jpg``), see :mod:`reidlab.data.market1501`.
2. Any folder plus a CSV file with a header row and these columns::

       path,pid,camid,split
       alice/cam1_0001.jpg,7,0,train
       bob/frontdoor.png,12,1,query
       bob/backdoor.png,12,0,gallery

   - ``path``: relative to ``root`` (or absolute);
   - ``pid``: integer person id (-1 = junk, skipped; 0 in the gallery = distractor);
   - ``camid``: integer camera id, 0-based;
   - ``split`` (optional column): ``train``, ``query`` or ``gallery``; without the
     column every row is a training image (query and gallery are then empty).

Training ids are relabelled 0..N-1; every listed file must exist.
"""
from __future__ import annotations

import csv as csv_module
import os
from pathlib import Path

from .market1501 import load_market_layout
from .records import ImageRecord, ReIDSplit, relabel

CSV_COLUMNS = ("path", "pid", "camid")
SPLITS = ("train", "query", "gallery")


def read_split_csv(csv_path: str | os.PathLike, root: str | os.PathLike) -> dict[str, list[ImageRecord]]:
    """``{"train": [...], "query": [...], "gallery": [...]}`` from a CSV (format above), ids not relabelled."""
    csv_path, root = Path(csv_path), Path(root)
    try:
        return _read_split_csv(csv_path, root)
    except UnicodeDecodeError as error:
        raise ValueError(f"CSV {csv_path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                         "save it as UTF-8") from None


def _read_split_csv(csv_path: Path, root: Path) -> dict[str, list[ImageRecord]]:
    subsets: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv_module.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        reader.fieldnames = columns
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"CSV {csv_path}: missing column(s) {missing}; the header must be "
                f"'path,pid,camid' with an optional 'split' column (found {columns})"
            )
        for line_number, row in enumerate(reader, start=2):
            where = f"CSV {csv_path}, line {line_number}"
            try:
                pid, camid = int(row["pid"]), int(row["camid"])
            except (TypeError, ValueError):
                raise ValueError(f"{where}: pid and camid must be integers, got {row['pid']!r}, {row['camid']!r}") from None
            if camid < 0:
                raise ValueError(f"{where}: camid must be 0-based (>= 0), got {camid}")
            split = (row.get("split") or "train").strip().lower()
            if split not in SPLITS:
                raise ValueError(f"{where}: split must be one of {SPLITS}, got {row.get('split')!r}")
            path = Path(row["path"].strip())
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise FileNotFoundError(f"{where}: image file not found: {path}")
            if pid == -1 or (pid == 0 and split != "gallery"):
                continue  # junk, or a distractor outside the gallery
            subsets[split].append(ImageRecord(str(path), pid, camid))
    return subsets


def load_folder(root, csv=None, name: str = "folder") -> ReIDSplit:
    """A user's own data: Market layout under ``root``, or ``csv`` listing the images."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"folder dataset: folder not found: {root}")
    if csv is None:
        return load_market_layout(root, name, None, None, None, None)
    csv_path = Path(csv)
    if not csv_path.is_file() and (root / csv_path).is_file():
        csv_path = root / csv_path
    if not csv_path.is_file():
        raise FileNotFoundError(f"folder dataset: CSV file not found: {csv_path}")
    subsets = read_split_csv(csv_path, root)
    if not subsets["train"] and not subsets["query"]:
        raise ValueError(f"CSV {csv_path}: no usable rows")
    return ReIDSplit(name, relabel(subsets["train"]), subsets["query"], subsets["gallery"], None, str(root))
