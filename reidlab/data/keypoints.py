"""Body keypoints: the Pose-Transfer CSV (18 OpenPose points) <-> our COCO-17 records.

File format (Zhu et al., "Progressive Pose Attention Transfer", data release
``market-annotation-{train,test}.csv``)::

    name:keypoints_y:keypoints_x
    0002_c1s1_000451_03.jpg: [y0, ..., y17]: [x0, ..., x17]

with -1 for a missing point, in pixels of the 64 x 128 (w x h) Market crop.
The 18 points are OpenPose's (:data:`OPENPOSE18_NAMES`); records hold COCO-17
``(17, 3)`` rows ``[x, y, visible]`` (:data:`~reidlab.data.records.COCO17_NAMES`).
OpenPose's neck has no COCO counterpart and is dropped; when writing, it is
re-made as the shoulder midpoint (what OpenPose's neck approximates).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .records import COCO17_NAMES, NUM_KEYPOINTS

OPENPOSE18_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
    "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
NECK = 1
# COCO17_FROM_OPENPOSE18[c] = the OpenPose index of COCO point c (found by name).
COCO17_FROM_OPENPOSE18: tuple[int, ...] = tuple(OPENPOSE18_NAMES.index(name) for name in COCO17_NAMES)
# The annotation frame of the Market-1501 crops, (width, height).
MARKET_FRAME = (64, 128)
CSV_HEADER = "name:keypoints_y:keypoints_x"


def read_pose_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{file basename: (18, 2) float32 array of (y, x)}``, -1 where missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"keypoint file not found: {path}")
    poses: dict[str, np.ndarray] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"keypoint file {path} is not UTF-8 text (byte {error.start}: {error.reason}); "
            f"expected the Pose-Transfer CSV 'NAME: [y0..y17]: [x0..x17]' (save it as UTF-8)"
        ) from None
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or (line_number == 1 and line.replace(" ", "") == CSV_HEADER):
            continue
        try:
            name, ys, xs = line.split(":")
            y, x = json.loads(ys), json.loads(xs)
            if len(y) != 18 or len(x) != 18:
                raise ValueError(f"expected 18 y and 18 x values, got {len(y)} and {len(x)}")
            poses[os.path.basename(name.strip())] = np.stack(
                [np.asarray(y, np.float32), np.asarray(x, np.float32)], axis=1
            )  # (18, 2) y, x
        except ValueError as error:
            raise ValueError(
                f"keypoint file {path}, line {line_number}: cannot parse "
                f"'NAME: [y0..y17]: [x0..x17]' ({error}): {line[:80]!r}"
            ) from error
    return poses


def openpose18_to_coco17(
    yx18: np.ndarray,
    image_size: tuple[int, int] | None = None,
    annotation_size: tuple[int, int] | None = MARKET_FRAME,
) -> np.ndarray:
    """``(18, 2)`` OpenPose (y, x) -> ``(17, 3)`` COCO [x, y, visible].

    ``annotation_size=None``: the points are in pixels of the image on disk, whatever its
    size (no frame check, no scaling; the transforms drop points outside the image).

    Coordinates stay in the annotation frame unless ``image_size`` (width, height)
    of the image on disk differs from ``annotation_size``; then they are scaled to it.
    A point with either coordinate < 0 is missing: ``(-1, -1, 0)``; so is a NaN point and one
    outside the annotation frame (:func:`count_dropped_points` counts those two kinds).
    """
    yx18 = np.asarray(yx18, dtype=np.float32)
    if yx18.shape != (18, 2):
        raise ValueError(f"openpose18_to_coco17: expected shape (18, 2) of (y, x), got {yx18.shape}")
    yx = yx18[list(COCO17_FROM_OPENPOSE18)]  # (17, 2) y, x
    width, height = annotation_size if annotation_size is not None else (np.inf, np.inf)
    with np.errstate(invalid="ignore"):  # NaN compares False: missing
        visible = (yx >= 0).all(axis=1) & (yx[:, 0] < height) & (yx[:, 1] < width)
    scale_x = scale_y = 1.0
    if image_size is not None and annotation_size is not None and tuple(image_size) != tuple(annotation_size):
        scale_x = image_size[0] / annotation_size[0]
        scale_y = image_size[1] / annotation_size[1]
    kp = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)  # (17, 3) x, y, visible
    kp[visible, 0] = yx[visible, 1] * scale_x
    kp[visible, 1] = yx[visible, 0] * scale_y
    kp[:, 2] = visible.astype(np.float32)
    return kp


def count_dropped_points(yx18: np.ndarray, annotation_size: tuple[int, int] | None = MARKET_FRAME) -> int:
    """How many COCO points of an ``(18, 2)`` (y, x) row are NaN or beyond the frame (negative = marked missing)."""
    yx = np.asarray(yx18, dtype=np.float32)[list(COCO17_FROM_OPENPOSE18)]  # (17, 2)
    width, height = annotation_size if annotation_size is not None else (np.inf, np.inf)
    nan = np.isnan(yx).any(axis=1)
    with np.errstate(invalid="ignore"):
        outside = (yx >= 0).all(axis=1) & ((yx[:, 0] >= height) | (yx[:, 1] >= width))
    return int((nan | outside).sum())


def coco17_to_openpose18(kp17: np.ndarray) -> np.ndarray:
    """``(17, 3)`` COCO [x, y, visible] -> ``(18, 2)`` OpenPose (y, x), -1 where missing.

    The neck is the midpoint of the two shoulders when both are visible.
    """
    kp17 = np.asarray(kp17, dtype=np.float32)
    if kp17.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"coco17_to_openpose18: expected shape (17, 3), got {kp17.shape}")
    yx18 = np.full((18, 2), -1.0, dtype=np.float32)
    for coco_index, openpose_index in enumerate(COCO17_FROM_OPENPOSE18):
        if kp17[coco_index, 2] > 0:
            yx18[openpose_index] = (kp17[coco_index, 1], kp17[coco_index, 0])
    left, right = COCO17_NAMES.index("left_shoulder"), COCO17_NAMES.index("right_shoulder")
    if kp17[left, 2] > 0 and kp17[right, 2] > 0:
        yx18[NECK] = (kp17[left, 1::-1] + kp17[right, 1::-1]) / 2  # (2,) y, x
    return yx18


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def write_pose_csv(path: str | os.PathLike, mapping: dict[str, np.ndarray]) -> Path:
    """Write ``{basename: (18, 2) (y, x)}`` in the Pose-Transfer CSV format."""
    path = Path(path)
    lines = [CSV_HEADER]
    for name, yx18 in mapping.items():
        yx18 = np.asarray(yx18, dtype=np.float64)
        if yx18.shape != (18, 2):
            raise ValueError(f"write_pose_csv: keypoints of {name} have shape {yx18.shape}, expected (18, 2)")
        ys = ", ".join(_number(v) for v in yx18[:, 0])
        xs = ", ".join(_number(v) for v in yx18[:, 1])
        lines.append(f"{name}: [{ys}]: [{xs}]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_body_point_mat(path: str | os.PathLike) -> np.ndarray:
    """The 14-point Market body-point ``.mat`` (MATLAB v7.3 / HDF5, layumi/market1501_body_point).

    Returns ``(N, 14, 2)`` float32 ``(x, y)``, one row per image in sorted file-name
    order of its split (the file stores no names). The 14 points are not mapped to
    COCO-17: their joint order is not documented by the release.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"body-point file not found: {path}")
    with h5py.File(path, "r") as handle:
        keys = [k for k in handle.keys() if not k.startswith("#")]
        if not keys:
            raise ValueError(f"body-point file {path}: no dataset inside")
        data = np.asarray(handle[keys[0]], dtype=np.float32)
    if data.ndim != 2 or 28 not in data.shape:
        raise ValueError(f"body-point file {path}: expected an (N, 28) array, got {data.shape}")
    if data.shape[1] != 28:
        data = data.T  # HDF5 from MATLAB may be transposed
    return np.stack([data[:, :14], data[:, 14:]], axis=2)  # (N, 14, 2) x, y


# ---------------------------------------------------------------------------
# The 14-point Market body points (layumi/market1501_body_point) -> COCO-17
# ---------------------------------------------------------------------------
# Joint order of the 14-point file, found from the data (the release does not document it):
# each index was matched to the Pose-Transfer CSV joint it is nearest to over the 32,668
# train + bounding_box_test images that have both (see data/README.md and
# :func:`compare_body_points`). It is the LSP / CPM order; index 0 is the top of the head
# (nearest CSV joint an eye at a median 6-8 px, 8 px above the nose), not a COCO point.
BODY14_NAMES: tuple[str, ...] = (
    "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist",
    "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
    "right_ankle", "left_hip", "left_knee", "left_ankle",
)
# COCO17_FROM_BODY14[c] = the 14-point index of COCO point c, or None (the five face points).
COCO17_FROM_BODY14: tuple[int | None, ...] = tuple(
    BODY14_NAMES.index(name) if name in BODY14_NAMES else None for name in COCO17_NAMES
)
# The file is MATLAB's: pixel coordinates counted from 1. Subtracting 1 gives our
# 0-based pixel centres (median distance to the CSV joints 2.0-3.2 px instead of 2.2-3.6 px).
BODY14_ORIGIN = 1.0


def body14_to_coco17(
    xy14: np.ndarray,
    image_size: tuple[int, int] | None = None,
    annotation_size: tuple[int, int] = MARKET_FRAME,
) -> np.ndarray:
    """``(14, 2)`` body points ``(x, y)`` (1-based, as in the file) -> ``(17, 3)`` COCO [x, y, visible].

    The 12 limb joints map one to one (:data:`COCO17_FROM_BODY14`); nose, eyes and ears are
    missing ``(-1, -1, 0)``; so are NaN points and points outside the annotation frame.
    Scaled to ``image_size`` (width, height) as :func:`openpose18_to_coco17`.
    """
    xy14 = np.asarray(xy14, dtype=np.float32)
    if xy14.shape != (14, 2):
        raise ValueError(f"body14_to_coco17: expected shape (14, 2) of (x, y), got {xy14.shape}")
    kp = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)  # (17, 3) x, y, visible
    kp[:, 2] = 0.0
    width, height = annotation_size
    scale_x = scale_y = 1.0
    if image_size is not None and tuple(image_size) != tuple(annotation_size):
        scale_x, scale_y = image_size[0] / width, image_size[1] / height
    for coco_index, body_index in enumerate(COCO17_FROM_BODY14):
        if body_index is None:
            continue
        x, y = xy14[body_index] - BODY14_ORIGIN
        if not (np.isfinite(x) and np.isfinite(y)) or not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
            continue
        kp[coco_index] = ((x + 0.5) * scale_x - 0.5, (y + 0.5) * scale_y - 0.5, 1.0)
    return kp


def align_body_points(points: np.ndarray, names: list[str], source: str | os.PathLike = "body-point file") -> dict[str, np.ndarray]:
    """``{name: (14, 2)}`` from the file's rows and the image names of its split.

    The file stores no names: row ``i`` is the ``i``-th image in sorted file-name order of
    the split folder (every image file, junk and distractors included). Different counts
    cannot be aligned and raise, naming both.
    """
    names = sorted(os.path.basename(str(n)) for n in names)
    if len(names) != len(points):
        raise ValueError(
            f"{source} has {len(points)} rows but its split folder has {len(names)} images: the rows are "
            f"matched to the images by sorted file name, so both must be complete (use the folder the file was made "
            f"for, or body_points='none')"
        )
    return dict(zip(names, points))


def compare_body_points(points: np.ndarray, poses: dict[str, np.ndarray], names: list[str]):
    """Evidence for :data:`BODY14_NAMES`: match each 14-point index to its nearest CSV joint.

    ``points`` ``(N, 14, 2)`` from :func:`read_body_point_mat`, ``names`` the N image names in
    row order (sorted), ``poses`` the Pose-Transfer CSV (:func:`read_pose_csv`). For index i,
    the matched OpenPose joint is the one with the smallest median distance over all images
    where it is visible; ``share`` is the fraction of those images in which it is also the
    nearest visible joint to point i. Distances in pixels of the 64 x 128 frame, after the
    1-based origin is removed. Returns a DataFrame indexed by the 14 point indices.
    """
    import pandas as pd

    rows = [i for i, n in enumerate(names) if n in poses]
    if not rows:
        raise ValueError("compare_body_points: no image name is in the keypoint CSV")
    xy14 = np.asarray(points, np.float32)[rows] - BODY14_ORIGIN  # (M, 14, 2) x, y
    xy18 = np.stack([poses[names[i]] for i in rows])[..., ::-1]  # (M, 18, 2) x, y
    visible = (xy18 >= 0).all(axis=-1)  # (M, 18)
    distance = np.linalg.norm(xy14[:, :, None, :] - xy18[:, None, :, :], axis=-1)  # (M, 14, 18)
    distance = np.where(visible[:, None, :], distance, np.nan)
    with np.errstate(all="ignore"):
        median = np.nanmedian(distance, axis=0)  # (14, 18)
    nearest = np.argmin(np.where(np.isnan(distance), np.inf, distance), axis=2)  # (M, 14)
    out = []
    for i in range(14):
        j = int(np.nanargmin(median[i]))
        seen = visible[:, j]
        out.append({
            "point": i,
            "name": BODY14_NAMES[i],
            "nearest_csv_joint": OPENPOSE18_NAMES[j],
            "median_px": float(median[i, j]),
            "p90_px": float(np.nanpercentile(distance[seen, i, j], 90)),
            "share": float((nearest[seen, i] == j).mean()),
            "images": int(seen.sum()),
        })
    return pd.DataFrame(out).set_index("point")
