"""Market-1501 (Zheng et al., ICCV 2015) and every dataset stored in its layout.

Layout (DukeMTMC-reID and CUHK03-NP use the same one)::

    ROOT/bounding_box_train/0002_c1s1_000451_03.jpg   training images
    ROOT/bounding_box_test/...                        gallery
    ROOT/query/...                                    queries

File name ``PPPP_cC[sS]_...``: person id ``PPPP`` (-1 = junk, 0 = distractor),
camera ``C`` (1-based in the name, 0-based in records). Market also has a
sequence ``sS``; Duke names look like ``0001_c2_f0046182.jpg``.

Choices: junk never enters a split; distractors stay in the gallery as
negatives but are dropped from train and query (they are not identities);
files that are not images (Market ships ``Thumbs.db``) are ignored.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from .attributes import read_attribute_file, report_attribute_coverage
from .images import is_image_file
from .keypoints import (
    MARKET_FRAME,
    align_body_points,
    body14_to_coco17,
    count_dropped_points,
    openpose18_to_coco17,
    read_body_point_mat,
    read_pose_csv,
)
from .records import ImageRecord, ReIDSplit, relabel

SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JUNK_PID, DISTRACTOR_PID = -1, 0
BODY_POINT_MODES = ("missing", "all", "none")
logger = logging.getLogger(__name__)
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+)?_")


def parse_market_name(name: str | os.PathLike) -> tuple[int, int]:
    """``(pid, camid)`` of a Market-style file name, camid 0-based.

    >>> parse_market_name("0002_c1s1_000451_03.jpg"), parse_market_name("0001_c2_f0046182.jpg")
    ((2, 0), (1, 1))
    """
    match = _MARKET_NAME.match(os.path.basename(str(name)))
    if match is None or int(match.group(2)) < 1:
        raise ValueError(
            f"cannot parse re-ID file name {name}: expected 'PID_cCAM...' "
            f"such as 0002_c1s1_000451_03.jpg or 0001_c2_f0046182.jpg (camera numbers from 1)"
        )
    return int(match.group(1)), int(match.group(2)) - 1


def find_layout_root(root: str | os.PathLike, dataset: str = "dataset") -> Path:
    """The folder holding ``bounding_box_train``/``bounding_box_test``/``query``:
    ``root`` itself, or its single sub-folder that has them (an unzipped archive
    such as ``Market-1501-v15.09.15``). Raises naming the missing folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset folder not found: {root}")
    if not (root / SPLIT_FOLDERS["train"]).is_dir():
        nested = [child for child in sorted(root.iterdir()) if (child / SPLIT_FOLDERS["train"]).is_dir()]
        if len(nested) == 1:
            root = nested[0]
    for folder in SPLIT_FOLDERS.values():
        if not (root / folder).is_dir():
            raise FileNotFoundError(
                f"{dataset}: split folder not found: {root / folder} "
                f"(expected {', '.join(SPLIT_FOLDERS.values())} under {root})"
            )
    return root


def scan_market_folder(folder: str | os.PathLike, subset: str) -> list[ImageRecord]:
    """Records of one split folder with the dataset's own ids, junk removed;
    distractors removed too unless ``subset == "gallery"``."""
    folder = Path(folder)
    records = []
    for name in sorted(os.listdir(folder)):
        if not is_image_file(name):
            continue
        pid, camid = parse_market_name(folder / name)
        if pid == JUNK_PID or pid < JUNK_PID:
            continue
        if pid == DISTRACTOR_PID and subset != "gallery":
            continue
        records.append(ImageRecord(str(folder / name), pid, camid))
    if not records:
        raise ValueError(f"no usable images found in {folder}")
    return records


def _resolve_files(spec, roots: list[Path], auto_names: list[str]) -> list[Path]:
    """``"auto"`` -> the auto names present in any of ``roots``; None -> []; a path or list -> those."""
    if spec is None:
        return []
    if isinstance(spec, str) and spec == "auto":
        found = []
        for name in auto_names:
            for root in roots:
                if (root / name).is_file():
                    found.append(root / name)
                    break
        return found
    paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    resolved = [Path(p) for p in paths]
    for path in resolved:
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
    return resolved


def attach_attributes(train, query, gallery, attribute_path: Path, dataset_root: Path):
    """Join identity-level attributes to images through the original person id:
    train images to the file's ``train`` part, query/gallery to its ``test`` part."""
    spec, parts = read_attribute_file(attribute_path)
    train_pids = {r.pid for r in train}
    missing = sorted(train_pids - parts["train"].keys())
    if missing:
        raise ValueError(
            f"attribute file {attribute_path} does not match the images in {dataset_root}: "
            f"{len(missing)} of {len(train_pids)} training ids have no entry in its 'train' part "
            f"(e.g. {missing[:5]})"
        )
    test_pids = {r.pid for r in (*query, *gallery) if r.pid != DISTRACTOR_PID}
    if test_pids and not test_pids & parts["test"].keys():
        raise ValueError(
            f"attribute file {attribute_path} does not match the images in {dataset_root}: "
            f"none of the {len(test_pids)} query/gallery ids is in its 'test' part"
        )

    def with_attributes(records, table):
        return [ImageRecord(r.path, r.pid, r.camid, table.get(r.pid), r.keypoints, r.extra) for r in records]

    train, query, gallery = with_attributes(train, parts["train"]), with_attributes(query, parts["test"]), with_attributes(gallery, parts["test"])
    report_attribute_coverage({"train": train, "query": query, "gallery": gallery}, attribute_path, (DISTRACTOR_PID,))
    return spec, train, query, gallery


def attach_keypoints(records, poses: dict, image_size=None, annotation_size=MARKET_FRAME, source: str = "keypoint file"):
    """Keypoints joined by file basename; images without an entry keep ``None``.

    NaN points and points outside the annotation frame become missing; their number is
    logged as a warning (naming ``source``)."""
    out, dropped, images = [], 0, 0
    for r in records:
        yx18 = poses.get(os.path.basename(r.path))
        keypoints = None
        if yx18 is not None:
            keypoints = openpose18_to_coco17(yx18, image_size, annotation_size)
            count = count_dropped_points(yx18, annotation_size)
            dropped, images = dropped + count, images + (count > 0)
        out.append(ImageRecord(r.path, r.pid, r.camid, r.attributes, keypoints, r.extra))
    if dropped:
        logger.warning(
            "%s: %d keypoint(s) in %d image(s) were NaN or outside the %s annotation frame and are now missing",
            source, dropped, images, "x".join(map(str, annotation_size)) if annotation_size else "(none)",
        )
    return out


def report_keypoint_coverage(subsets: dict, source: str) -> dict[str, tuple[int, int]]:
    """``{subset: (images with keypoints, images)}``; a warning naming the counts when a subset is only
    partly covered (as for attribute files), e.g. "covers only 0/3368 query images"."""
    coverage = {name: (sum(r.keypoints is not None for r in records), len(records)) for name, records in subsets.items()}
    partial = {name: counts for name, counts in coverage.items() if counts[0] < counts[1]}
    if partial:
        listing = ", ".join(f"{covered}/{total} {name} images" for name, (covered, total) in partial.items())
        logger.warning("keypoint file %s covers only %s; the other images carry no keypoints", source, listing)
    return coverage


def attach_body_points(records, points: dict, mode: str = "missing", image_size=None, annotation_size=MARKET_FRAME):
    """Fill keypoints from the 14-point file (``{name: (14, 2)}``, see :func:`align_body_points`):
    ``mode="missing"`` only where a record has none (e.g. Market queries, which the
    Pose-Transfer CSVs do not cover), ``"all"`` everywhere (one keypoint source for every image)."""
    out = []
    for r in records:
        xy14 = points.get(os.path.basename(r.path))
        keypoints = r.keypoints
        if xy14 is not None and (mode == "all" or keypoints is None):
            keypoints = body14_to_coco17(xy14, image_size, annotation_size)
        out.append(ImageRecord(r.path, r.pid, r.camid, r.attributes, keypoints, r.extra))
    return out


def _folder_image_names(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if is_image_file(name))


def load_market_layout(
    root,
    name: str,
    attribute_file="auto",
    keypoint_files="auto",
    auto_attribute_name: str | None = "market_attribute.mat",
    auto_keypoint_prefix: str | None = "market",
    keypoint_image_size: tuple[int, int] | None = None,
    keypoint_annotation_size: tuple[int, int] | None = MARKET_FRAME,
    body_points: str = "missing",
    auto_body_point_prefix: str | None = None,
) -> ReIDSplit:
    """Any dataset in the Market layout, with optional attribute and keypoint files.

    ``body_points``: how the 14-point files ``{auto_body_point_prefix}_14point_{train,query,gallery}.mat``
    in the dataset folder are used when present: ``"missing"`` fills images without a CSV
    row, ``"all"`` replaces the CSV keypoints everywhere, ``"none"`` ignores the files.
    """
    if body_points not in BODY_POINT_MODES:
        raise ValueError(f"{name}: body_points must be one of {BODY_POINT_MODES}, got {body_points!r}")
    given_root = Path(root)
    layout_root = find_layout_root(given_root, name)
    train = scan_market_folder(layout_root / SPLIT_FOLDERS["train"], "train")
    query = scan_market_folder(layout_root / SPLIT_FOLDERS["query"], "query")
    gallery = scan_market_folder(layout_root / SPLIT_FOLDERS["gallery"], "gallery")

    search_roots = list(dict.fromkeys([layout_root, given_root]))
    spec = None
    attribute_names = [auto_attribute_name] if auto_attribute_name else []
    attribute_paths = _resolve_files(attribute_file, search_roots, attribute_names)
    if len(attribute_paths) > 1:
        raise ValueError(f"{name}: give one attribute file, not {len(attribute_paths)}")
    if attribute_paths:
        spec, train, query, gallery = attach_attributes(train, query, gallery, attribute_paths[0], layout_root)

    keypoint_names = (
        [f"{auto_keypoint_prefix}-annotation-{part}.csv" for part in ("train", "test", "query")]
        if auto_keypoint_prefix else []
    )
    keypoint_paths = _resolve_files(keypoint_files, search_roots, keypoint_names)
    source = ""
    if keypoint_paths:
        poses: dict[str, np.ndarray] = {}
        for path in keypoint_paths:
            poses.update(read_pose_csv(path))
        basenames = {os.path.basename(r.path) for r in (*train, *query, *gallery)}
        if not basenames & poses.keys():
            raise ValueError(
                f"keypoint file(s) {[str(p) for p in keypoint_paths]} do not match the images in "
                f"{layout_root}: no file name in them is an image of the dataset"
            )
        source = ", ".join(str(p) for p in keypoint_paths)
        train, query, gallery = (
            attach_keypoints(records, poses, keypoint_image_size, keypoint_annotation_size, source)
            for records in (train, query, gallery)
        )

    if auto_body_point_prefix and body_points != "none":
        subsets = {"train": train, "query": query, "gallery": gallery}
        for subset, records in subsets.items():
            found = _resolve_files("auto", search_roots, [f"{auto_body_point_prefix}_14point_{subset}.mat"])
            if not found:
                continue
            folder = layout_root / SPLIT_FOLDERS[subset]
            points = align_body_points(read_body_point_mat(found[0]), _folder_image_names(folder), found[0])
            subsets[subset] = attach_body_points(records, points, body_points, keypoint_image_size, keypoint_annotation_size)
            source = f"{source} + {found[0]}" if keypoint_paths else str(found[0])
        train, query, gallery = subsets["train"], subsets["query"], subsets["gallery"]
    if keypoint_paths or any(r.keypoints is not None for r in (*train, *query, *gallery)):
        report_keypoint_coverage({"train": train, "query": query, "gallery": gallery}, source)
    return ReIDSplit(name, relabel(train), query, gallery, spec, str(layout_root))


def load_market1501(
    root,
    attribute_file="auto",
    keypoint_files="auto",
    name: str = "market1501",
    keypoint_image_size: tuple[int, int] | None = None,
    body_points: str = "missing",
) -> ReIDSplit:
    """Market-1501 (or any dataset in its layout and naming) as a :class:`ReIDSplit`.

    ``attribute_file`` / ``keypoint_files``: ``"auto"`` uses ``market_attribute.mat``
    and ``market-annotation-{train,test,query}.csv`` when they are in ``root``;
    ``None`` disables; a path (or list of CSV paths) uses that file.
    ``keypoint_image_size``: (width, height) of the images on disk when they are not
    the 64 x 128 crops the keypoints were annotated on (coordinates are then scaled).
    ``body_points``: the 14-point files ``market1501_14point_{train,query,gallery}.mat``
    (layumi/market1501_body_point), when in ``root``, give keypoints to the images the CSVs
    do not cover ("missing", the default: every query), to all images ("all"), or to none
    ("none"). They have the 12 limb joints and no face points; the mapping and its agreement
    with the CSVs are in data/README.md.
    """
    return load_market_layout(
        root, name, attribute_file, keypoint_files,
        auto_attribute_name="market_attribute.mat", auto_keypoint_prefix="market",
        keypoint_image_size=keypoint_image_size,
        body_points=body_points, auto_body_point_prefix="market1501",
    )
