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
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
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
    annotation_size: tuple[int, int] = MARKET_FRAME,
) -> np.ndarray:
    """``(18, 2)`` OpenPose (y, x) -> ``(17, 3)`` COCO [x, y, visible].

    Coordinates stay in the annotation frame unless ``image_size`` (width, height)
    of the image on disk differs from ``annotation_size``; then they are scaled to it.
    A point with either coordinate < 0 is missing: ``(-1, -1, 0)``.
    """
    yx18 = np.asarray(yx18, dtype=np.float32)
    if yx18.shape != (18, 2):
        raise ValueError(f"openpose18_to_coco17: expected shape (18, 2) of (y, x), got {yx18.shape}")
    yx = yx18[list(COCO17_FROM_OPENPOSE18)]  # (17, 2) y, x
    visible = (yx >= 0).all(axis=1)
    scale_x = scale_y = 1.0
    if image_size is not None and tuple(image_size) != tuple(annotation_size):
        scale_x = image_size[0] / annotation_size[0]
        scale_y = image_size[1] / annotation_size[1]
    kp = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)  # (17, 3) x, y, visible
    kp[visible, 0] = yx[visible, 1] * scale_x
    kp[visible, 1] = yx[visible, 0] * scale_y
    kp[:, 2] = visible.astype(np.float32)
    return kp


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
