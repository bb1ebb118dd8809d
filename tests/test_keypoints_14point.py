"""The 14-point Market body-point files -> COCO-17: mapping, alignment by sorted names, loader use.

Real-file tests read ../shared/data (skipped when absent). There are no Market images here,
so the loader is run on a tree of empty files named as the real images (the names come from
the Pose-Transfer CSVs, which cover every train and bounding_box_test image)."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from reidlab.data import load_market1501, read_pose_csv
from reidlab.data.keypoints import (
    BODY14_NAMES,
    COCO17_FROM_BODY14,
    align_body_points,
    body14_to_coco17,
    compare_body_points,
    read_body_point_mat,
)
from reidlab.data.records import COCO17_NAMES
from conftest import shared_file

MARKET = "annotations/market1501"
LIMBS = [name for name in COCO17_NAMES if name in BODY14_NAMES]
# Measured on the real files (data/README.md): medians 2.0-3.2 px, shares 0.84-0.94.
MAX_MEDIAN_PX, MIN_SHARE = 4.0, 0.8


def _write_body_mat(path, xy14):
    """A file as layumi's: one (N, 28) dataset, 14 x then 14 y, 1-based pixels."""
    with h5py.File(path, "w") as handle:
        handle["pp"] = np.concatenate([xy14[..., 0], xy14[..., 1]], axis=1).astype(np.float64)


def _touch_tree(root, subsets: dict[str, list[str]]):
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for subset, names in subsets.items():
        folder = root / folders[subset]
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).touch()


def test_body14_to_coco17_maps_limbs_and_leaves_face_missing():
    xy14 = np.stack([np.arange(1, 15), np.arange(101, 115)], axis=1).astype(np.float32)  # (14, 2), 1-based
    kp = body14_to_coco17(xy14)
    for coco_index, name in enumerate(COCO17_NAMES):
        if name in BODY14_NAMES:
            body_index = BODY14_NAMES.index(name)
            assert kp[coco_index].tolist() == [body_index, 100 + body_index, 1.0]  # 1-based -> 0-based
        else:
            assert kp[coco_index].tolist() == [-1.0, -1.0, 0.0]
    assert sum(i is not None for i in COCO17_FROM_BODY14) == 12
    xy14[2] = (np.nan, 5.0)  # right shoulder NaN
    xy14[3] = (10.0, 5000.0)  # right elbow far below the 128-pixel frame
    kp = body14_to_coco17(xy14)
    assert kp[COCO17_NAMES.index("right_shoulder"), 2] == 0 and kp[COCO17_NAMES.index("right_elbow"), 2] == 0
    scaled = body14_to_coco17(np.full((14, 2), 1.0), image_size=(128, 256))  # pixel 0 -> pixel centre 0.5
    assert np.allclose(scaled[COCO17_NAMES.index("left_hip"), :2], 0.5)


def test_align_body_points_refuses_different_counts():
    points = np.zeros((3, 14, 2), np.float32)
    aligned = align_body_points(points, ["b.jpg", "a.jpg", "c.jpg"])
    assert list(aligned) == ["a.jpg", "b.jpg", "c.jpg"]
    with pytest.raises(ValueError, match=r"body.mat has 3 rows but its split folder has 2 images"):
        align_body_points(points, ["a.jpg", "b.jpg"], "body.mat")


def test_loader_fills_queries_from_the_14_point_file(tmp_path):
    train = [f"0002_c1s1_00{i}_00.jpg" for i in range(3)]
    query = ["0005_c2s1_001_00.jpg", "0003_c1s1_001_00.jpg"]
    gallery = ["0003_c3s1_002_00.jpg", "-1_c1s1_003_00.jpg", "0000_c2s1_004_00.jpg", "0005_c1s1_002_00.jpg"]
    _touch_tree(tmp_path, {"train": train, "query": query, "gallery": gallery})
    rng = np.random.default_rng(0)
    for subset, names in (("train", train), ("query", query), ("gallery", gallery)):
        _write_body_mat(tmp_path / f"market1501_14point_{subset}.mat", rng.uniform(1, 60, (len(names), 14, 2)))
    (tmp_path / "market-annotation-train.csv").write_text(
        "name:keypoints_y:keypoints_x\n" + "".join(f"{n}: [{', '.join(['10'] * 18)}]: [{', '.join(['20'] * 18)}]\n" for n in train)
    )
    split = load_market1501(tmp_path)
    assert all(r.keypoints is not None for r in (*split.train, *split.query, *split.gallery))
    assert split.train[0].keypoints[0].tolist() == [20.0, 10.0, 1.0]  # CSV row kept (nose visible)
    query_points = read_body_point_mat(tmp_path / "market1501_14point_query.mat")
    first = sorted(query)[0]  # row 0 = first name in sorted order
    record = next(r for r in split.query if r.path.endswith(first))
    assert np.allclose(record.keypoints, body14_to_coco17(query_points[0]))
    everywhere = load_market1501(tmp_path, body_points="all")
    assert everywhere.train[0].keypoints[0, 2] == 0  # the 14-point file has no nose
    none = load_market1501(tmp_path, body_points="none")
    assert all(r.keypoints is None for r in none.query)
    with pytest.raises(ValueError, match="body_points must be one of"):
        load_market1501(tmp_path, body_points="some")
    (tmp_path / "query" / "0007_c1s1_009_00.jpg").touch()
    with pytest.raises(ValueError, match=r"market1501_14point_query.mat has 2 rows but its split folder has 3 images"):
        load_market1501(tmp_path)


# ---------------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def real_market(shared_data):
    files = {part: shared_file(shared_data, f"{MARKET}/market1501_14point_{part}.mat") for part in ("train", "query", "gallery")}
    csvs = {"train": shared_file(shared_data, f"{MARKET}/market-annotation-train.csv"),
            "gallery": shared_file(shared_data, f"{MARKET}/market-annotation-test.csv")}
    return files, csvs


@pytest.mark.parametrize("part", ["train", "gallery"])
def test_real_14_point_mapping_agrees_with_the_csv(real_market, part):
    files, csvs = real_market
    poses = read_pose_csv(csvs[part])
    points = read_body_point_mat(files[part])
    table = compare_body_points(points, poses, sorted(poses))
    for index, name in enumerate(BODY14_NAMES[1:], start=1):  # each joint matches its own name
        row = table.loc[index]
        assert row.nearest_csv_joint == name, (index, row.nearest_csv_joint)
        if name in LIMBS:  # the 12 joints the loader uses (the neck is no COCO point)
            assert row.median_px <= MAX_MEDIAN_PX and row.share >= MIN_SHARE, row.to_dict()
    assert table.loc[0, "nearest_csv_joint"] in ("left_eye", "right_eye", "nose")  # head top: not a COCO point
    # alignment by sorted name: one row off breaks the agreement
    shifted = compare_body_points(points[1:], poses, sorted(poses)[:-1])
    assert shifted.loc[2, "median_px"] > 3 * table.loc[2, "median_px"]


def test_real_market_every_image_gets_keypoints(real_market, tmp_path, shared_data):
    files, csvs = real_market
    train_names, gallery_names = sorted(read_pose_csv(csvs["train"])), sorted(read_pose_csv(csvs["gallery"]))
    query_rows = len(read_body_point_mat(files["query"]))
    # No real query names here: 3,368 valid Market names stand in (rows are aligned by sorted order).
    query_names = [f"{1 + i % 750:04d}_c{1 + i % 6}s1_{i:06d}_00.jpg" for i in range(query_rows)]
    _touch_tree(tmp_path, {"train": train_names, "query": query_names, "gallery": gallery_names})
    for part, path in files.items():
        os.symlink(path, tmp_path / path.name)
    for path in csvs.values():
        os.symlink(path, tmp_path / path.name)
    split = load_market1501(tmp_path, attribute_file=None)
    summary = split.summary()
    for subset in ("train", "query", "gallery"):
        records = getattr(split, subset)
        assert summary.loc[subset, "with_keypoints"] == len(records) > 0, subset
    assert len(split.query) == 3368
    # queries now carry the 12 limb joints; the CSV rows keep their face points
    limb_columns = [COCO17_NAMES.index(n) for n in LIMBS]
    query_visible = np.stack([r.keypoints[:, 2] for r in split.query])  # (Q, 17)
    assert query_visible[:, limb_columns].mean() > 0.99 and query_visible[:, :5].max() == 0
    assert np.mean([r.keypoints[0, 2] for r in split.gallery]) > 0.3
