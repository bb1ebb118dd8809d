"""Loaders against the real annotation files and images in ../shared/data
(skipped when absent): the formats are parsed as released, not as we imagine them."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import scipy.io

from reidlab.data import (
    COCO17_NAMES,
    DUKE_ATTRIBUTES,
    MARKET_ATTRIBUTES,
    load_cuhk01,
    load_cuhk03,
    load_market1501,
    openpose18_to_coco17,
    parse_market_name,
    read_attribute_file,
    read_image,
    read_pose_csv,
)
from reidlab.data.cuhk03 import read_protocol_file
from conftest import shared_file

MARKET = "annotations/market1501"


def _raw_struct(path, top):
    mat = scipy.io.loadmat(str(path))[top][0, 0]
    return {part: mat[part][0, 0] for part in ("train", "test")}


def _raw_ids(struct):
    return [int(np.asarray(x).ravel()[0]) for x in struct["image_index"].ravel()]


def _train_txt(shared_data):
    rows = []
    for name in ("train.txt", "val.txt"):
        for line in shared_file(shared_data, f"{MARKET}/{name}").read_text().splitlines():
            if line.strip():
                path, label = line.split()
                rows.append((path, int(label)))
    return rows


def test_market_attribute_file(shared_data):
    path = shared_file(shared_data, f"{MARKET}/market_attribute.mat")
    spec, parts = read_attribute_file(path)
    assert spec == MARKET_ATTRIBUTES and len(spec) == 27
    assert len(parts["train"]) == 751 and len(parts["test"]) == 750
    assert spec.num_classes[spec.index("age")] == 4 and spec.table()["classes"].sum() == 26 * 2 + 4
    # training ids are exactly those of the real training file names
    train_ids = {int(p.split("/")[-1][:4]) for p, _ in _train_txt(shared_data)}
    assert set(parts["train"]) == train_ids
    # independent reading by field name (the test part's field order differs from train's)
    raw = _raw_struct(path, "market_attribute")
    assert raw["train"].dtype.names[:28] != raw["test"].dtype.names[:28]
    for part in ("train", "test"):
        ids = _raw_ids(raw[part])
        for k, name in enumerate(spec.names):
            column = raw[part][name].ravel().astype(int) - 1
            got = np.array([parts[part][pid][k] for pid in ids])
            np.testing.assert_array_equal(got, column, err_msg=f"{part}/{name}")
    ages = np.array([row[spec.index("age")] for row in parts["train"].values()])
    assert ages.min() >= 0 and ages.max() == 3


def test_duke_attribute_file(shared_data):
    path = shared_file(shared_data, "annotations/dukemtmc/duke_attribute.mat")
    spec, parts = read_attribute_file(path)
    assert spec == DUKE_ATTRIBUTES and len(spec) == 23 and set(spec.num_classes) == {2}
    assert len(parts["train"]) == 702 and len(parts["test"]) == 1110
    raw = _raw_struct(path, "duke_attribute")
    for part in ("train", "test"):
        ids = _raw_ids(raw[part])
        assert sorted(parts[part]) == sorted(ids)
        for k, name in enumerate(spec.names):
            column = raw[part][name].ravel().astype(int)
            got = np.array([parts[part][pid][k] for pid in ids])
            # 1/2 -> 0/1; the file's few 0s ("not labelled") -> -1
            np.testing.assert_array_equal(got, np.where(column == 0, -1, column - 1), err_msg=f"{part}/{name}")
    top = spec.index("top")
    assert sum(row[top] == -1 for row in parts["train"].values()) == int((raw["train"]["top"] == 0).sum())


def test_market_keypoint_csvs(shared_data):
    train = read_pose_csv(shared_file(shared_data, f"{MARKET}/market-annotation-train.csv"))
    test = read_pose_csv(shared_file(shared_data, f"{MARKET}/market-annotation-test.csv"))
    assert len(train) == 12936 and len(test) == 19732
    # first data row of the train file, checked by hand:
    # 0224_c6s1_055726_02.jpg: y [8, 23, 23, 43, 60, 23, ...] x [39, 37, 20, 12, 8, 53, ...]
    kp = openpose18_to_coco17(train["0224_c6s1_055726_02.jpg"])
    name = {n: i for i, n in enumerate(COCO17_NAMES)}
    assert tuple(kp[name["nose"]]) == (39, 8, 1)
    assert tuple(kp[name["left_shoulder"]]) == (53, 23, 1)  # OpenPose 5 = Lsho
    assert tuple(kp[name["right_shoulder"]]) == (20, 23, 1)  # OpenPose 2 = Rsho
    assert tuple(kp[name["left_eye"]]) == (42, 6, 1)  # OpenPose 15 = Leye
    assert tuple(kp[name["right_ankle"]]) == (24, 118, 1)  # OpenPose 10 = Rank
    # second row: 1123_c2s2_161352_01.jpg has nose missing (-1) and ears at y=11
    kp = openpose18_to_coco17(train["1123_c2s2_161352_01.jpg"])
    assert tuple(kp[name["nose"]]) == (-1, -1, 0)
    assert tuple(kp[name["left_ear"]]) == (26, 11, 1) and tuple(kp[name["right_ear"]]) == (39, 11, 1)
    # on every row: COCO left_shoulder is OpenPose index 5, coordinates within the 64 x 128 frame
    for yx in list(train.values())[::97]:
        kp = openpose18_to_coco17(yx)
        if (yx[5] >= 0).all():
            assert tuple(kp[5, :2]) == (yx[5, 1], yx[5, 0])
        visible = kp[:, 2] > 0
        assert (kp[visible, 0] <= 64).all() and (kp[visible, 1] <= 128).all()


def test_cuhk03_np_split_sizes_from_real_mat(shared_data, tmp_path):
    source = shared_file(shared_data, "annotations/cuhk03/cuhk03_new_protocol_config_labeled.mat")
    detected = read_protocol_file(shared_file(shared_data, "annotations/cuhk03/cuhk03_new_protocol_config_detected.mat"))
    assert [len(detected[k]) for k in ("train_idx", "query_idx", "gallery_idx")] == [7365, 1400, 5332]
    root = tmp_path / "cuhk03"
    (root / "images_labeled").mkdir(parents=True)
    shutil.copy(source, root)
    raw = scipy.io.loadmat(str(source))
    files = [str(f[0]) for f in raw["filelist"].ravel()]
    for name in files:  # placeholder PNGs named from the real filelist
        (root / "images_labeled" / name).write_bytes(b"")
    split = load_cuhk03(root, variant="labeled")
    assert (len(split.train), len(split.query), len(split.gallery)) == (7368, 1400, 5328)
    assert split.num_train_pids == 767 and sorted({r.pid for r in split.train}) == list(range(767))
    assert len({r.pid for r in split.query}) == 700
    query_idx = raw["query_idx"].ravel().astype(int) - 1
    assert [r.pid for r in split.query] == raw["labels"].ravel()[query_idx].astype(int).tolist()
    assert [os.path.basename(r.path) for r in split.query] == [files[i] for i in query_idx]
    assert {r.camid for r in split.gallery} == {0, 1}
    assert not {r.extra["orig_pid"] for r in split.train} & {r.pid for r in split.gallery}


def test_market_tree_from_real_names_with_real_annotations(shared_data, tmp_path):
    rows = _train_txt(shared_data)
    test_names = [line.split(":")[0] for line in
                  shared_file(shared_data, f"{MARKET}/market-annotation-test.csv").read_text().splitlines()[1:]]
    root = tmp_path / "market1501"
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (root / folder).mkdir(parents=True)
    for path, _ in rows:
        (root / path).write_bytes(b"")
    for name in test_names:
        (root / "bounding_box_test" / name).write_bytes(b"")
    for crop in sorted((shared_data / "images" / "market1501-samples").glob("*.jpg")):
        shutil.copy(crop, root / "query")
    for name in ("market_attribute.mat", "market-annotation-train.csv", "market-annotation-test.csv"):
        os.symlink(shared_file(shared_data, f"{MARKET}/{name}"), root / name)

    split = load_market1501(root)
    assert len(split.train) == 12936 and split.num_train_pids == 751 and split.num_train_cams == 6
    # our relabelling agrees with the label column of the released train.txt/val.txt
    labels = {os.path.basename(p): label for p, label in rows}
    assert all(r.pid == labels[os.path.basename(r.path)] for r in split.train)
    junk = sum(name.startswith("-1_") for name in test_names)
    assert len(split.gallery) == len(test_names) - junk == 15913
    assert sum(r.pid == 0 for r in split.gallery) == sum(n.startswith("0000_") for n in test_names)
    assert split.attribute_spec == MARKET_ATTRIBUTES
    assert all(r.attributes is not None and r.keypoints is not None for r in split.train)
    assert all(r.keypoints is not None for r in split.gallery)
    assert all((r.attributes is None) == (r.pid == 0) for r in split.gallery)
    assert all(r.attributes is not None for r in split.query)
    # one record checked against the raw files
    poses = read_pose_csv(root / "market-annotation-train.csv")
    record = next(r for r in split.train if r.path.endswith("0224_c6s1_055726_02.jpg"))
    np.testing.assert_array_equal(record.keypoints, openpose18_to_coco17(poses["0224_c6s1_055726_02.jpg"]))
    _, parts = read_attribute_file(root / "market_attribute.mat")
    np.testing.assert_array_equal(record.attributes, parts["train"][224])


def test_real_market_crops(shared_data):
    folder = shared_data / "images" / "market1501-samples"
    crops = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not crops:
        pytest.skip(f"no Market-1501 sample crops in {folder}")
    for crop in crops:
        image = read_image(crop)
        assert image.mode == "RGB" and image.size == (64, 128)
        assert np.asarray(image).std() > 0
        pid, camid = parse_market_name(crop)
        assert pid == int(crop.name[:4]) and camid == int(crop.name.split("_c")[1][0]) - 1


def test_cuhk01_whole_dataset(shared_data):
    root = shared_data / "images" / "cuhk01"
    if not root.is_dir():
        pytest.skip(f"CUHK01 not found at {root}")
    split = load_cuhk01(root)
    everything = split.train + split.query + split.gallery
    assert len(everything) == 3884 == len(list(root.glob("*.png")))
    assert split.num_train_pids == 485 and len(split.train) == 485 * 4
    test_ids = {r.pid for r in split.query}
    assert len(test_ids) == 486 and test_ids == {r.pid for r in split.gallery}
    assert len({r.extra["orig_pid"] for r in split.train} | test_ids) == 971
    assert all(r.path[-7:-4] in ("001", "002") and r.camid == 0 for r in split.query)
    assert all(r.path[-7:-4] in ("003", "004") and r.camid == 1 for r in split.gallery)
    same = load_cuhk01(root, seed=0)
    other = load_cuhk01(root, seed=1)
    assert [r.path for r in same.query] == [r.path for r in split.query]
    assert {r.pid for r in other.query} != test_ids
    image = read_image(split.query[0].path)
    assert image.size == (60, 160)


def test_market_14_point_body_files(shared_data):
    from reidlab.data.keypoints import read_body_point_mat

    sizes = {"train": 12936, "query": 3368, "gallery": 19732}
    for split, size in sizes.items():
        points = read_body_point_mat(shared_file(shared_data, f"{MARKET}/market1501_14point_{split}.mat"))
        assert points.shape == (size, 14, 2) and points.dtype == np.float32
        # x within the 64-pixel width, y within the 128-pixel height (the file: 14 x then 14 y)
        assert points[..., 0].max() <= 64 and points[..., 1].max() <= 128
        assert points[..., 1].max() > 64
