"""Loaders on small hand-made trees: layouts, junk/distractors, relabelling,
attribute and keypoint joins, and errors that name the file or folder."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reidlab.data import (
    COCO17_NAMES,
    MARKET_ATTRIBUTES,
    AttributeSpec,
    ImageReadError,
    coco17_to_openpose18,
    load_cuhk01,
    load_cuhk03,
    load_dataset,
    load_dukemtmc,
    load_folder,
    load_market1501,
    openpose18_to_coco17,
    parse_market_name,
    read_attribute_file,
    read_image,
    read_pose_csv,
    verify_images,
    write_attribute_file,
    write_pose_csv,
)

TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000101_02.jpg",
         "0010_c6s2_000101_01.jpg", "0010_c1s2_000201_01.jpg"]
QUERY = ["0001_c1s1_001051_00.jpg", "0003_c2s1_000151_00.jpg"]
GALLERY = ["0001_c2s1_000301_01.jpg", "0003_c4s1_000101_02.jpg", "0000_c1s1_000000_01.jpg",
           "0000_c5s1_000002_02.jpg", "-1_c1s1_000401_03.jpg", "-1_c3s1_000401_04.jpg", "0001_c1s1_001051_00.jpg"]


def make_market_tree(root, train=TRAIN, query=QUERY, gallery=GALLERY):
    for folder, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(b"")  # the loader lists names, it does not decode
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"x")  # Market ships these
    return root


# ---------------------------------------------------------------- Market layout

def test_parse_market_and_duke_names():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("-1_c3s2_000001_00.jpg") == (-1, 2)
    assert parse_market_name("0001_c8_f0046182.jpg") == (1, 7)
    for bad in ("c1s1_0002.jpg", "0002_x1s1_000451_03.jpg", "0002_c0s1_000451_03.jpg"):
        with pytest.raises(ValueError, match=bad):
            parse_market_name(bad)


def test_market_junk_excluded_distractors_in_gallery(tmp_path):
    split = load_market1501(make_market_tree(tmp_path / "m"))
    everything = split.train + split.query + split.gallery
    assert not any("/-1_" in r.path for r in everything)
    assert all(r.pid != -1 for r in everything)
    distractors = [r for r in split.gallery if r.pid == 0]
    assert sorted(p.split("/")[-1] for p in (r.path for r in distractors)) == sorted(n for n in GALLERY if n.startswith("0000"))
    assert all(r.pid != 0 for r in split.query)
    expected_gallery = [n for n in GALLERY if not n.startswith("-1")]
    assert len(split.gallery) == len(expected_gallery)
    assert len(split.query) == len(QUERY)
    # camera ids 0-based, read from the names
    for r in split.gallery + split.query:
        assert r.camid == int(r.path.split("/")[-1].split("_c")[1][0]) - 1


def test_market_train_relabel_contiguous(tmp_path):
    split = load_market1501(make_market_tree(tmp_path / "m"))
    original = sorted({int(n[:4]) for n in TRAIN})
    assert sorted({r.pid for r in split.train}) == list(range(len(original)))
    for r in split.train:
        name_pid = int(r.path.split("/")[-1][:4])
        assert r.extra["orig_pid"] == name_pid
        assert r.pid == original.index(name_pid)
    assert split.num_train_pids == 3 and split.num_train_cams == 4
    assert len(split.attribute_spec) == 0 and not split.has_keypoints


def test_bad_file_name_error_names_the_file(tmp_path):
    root = make_market_tree(tmp_path / "m", train=TRAIN + ["person7.jpg"])
    with pytest.raises(ValueError, match="person7.jpg"):
        load_market1501(root)


def test_missing_split_folder_error_names_the_folder(tmp_path):
    root = make_market_tree(tmp_path / "m")
    for name in QUERY:
        (root / "query" / name).unlink()
    (root / "query").rmdir()
    with pytest.raises(FileNotFoundError, match=r"m/query"):
        load_market1501(root)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_market1501(tmp_path / "nowhere")


def test_nested_archive_folder_is_found(tmp_path):
    make_market_tree(tmp_path / "market1501" / "Market-1501-v15.09.15")
    split = load_market1501(tmp_path / "market1501")
    assert len(split.train) == len(TRAIN)
    assert split.root.endswith("Market-1501-v15.09.15")


def test_duke_names_load(tmp_path):
    root = make_market_tree(
        tmp_path / "duke",
        train=["0001_c2_f0046182.jpg", "0005_c8_f0000001.jpg"],
        query=["0011_c1_f0000002.jpg"],
        gallery=["0011_c7_f0000003.jpg", "0000_c1_f0000004.jpg"],
    )
    split = load_dukemtmc(root)
    assert sorted(r.camid for r in split.train) == [1, 7]
    assert split.name == "dukemtmc" and len(split.gallery) == 2


# ---------------------------------------------------------------- attributes

def _random_parts(spec, train_ids, test_ids, seed=0):
    rng = np.random.default_rng(seed)
    return {
        part: {pid: rng.integers(0, np.asarray(spec.num_classes)) for pid in ids}
        for part, ids in (("train", train_ids), ("test", test_ids))
    }


def test_attribute_file_round_trip_and_inferred_spec(tmp_path):
    parts = _random_parts(MARKET_ATTRIBUTES, [2, 7, 10], [1, 3, 4])
    write_attribute_file(tmp_path / "market_attribute.mat", MARKET_ATTRIBUTES, parts)
    spec, read = read_attribute_file(tmp_path / "market_attribute.mat")
    assert spec == MARKET_ATTRIBUTES
    for part in ("train", "test"):
        assert sorted(read[part]) == sorted(parts[part])
        for pid, row in parts[part].items():
            np.testing.assert_array_equal(read[part][pid], row)
    # an unknown field set: classes inferred from the largest value per field
    custom = AttributeSpec(("colour", "hat"), (3, 2))
    rows = {"train": {1: np.array([2, 0]), 2: np.array([0, 1])}, "test": {5: np.array([1, 0])}}
    write_attribute_file(tmp_path / "custom.mat", custom, rows, struct_name="my_attribute")
    spec, read = read_attribute_file(tmp_path / "custom.mat")
    assert spec.names == ("colour", "hat") and spec.num_classes == (3, 2)
    np.testing.assert_array_equal(read["train"][1], [2, 0])


def test_attribute_file_read_by_field_name_not_position(tmp_path):
    # train and test parts with different field orders, as in the real files
    train = {"hat": np.array([[1, 2]], np.uint8), "bag": np.array([[2, 2]], np.uint8),
             "image_index": np.array([["0002", "0007"]], dtype=object)}
    test = {"bag": np.array([[1]], np.uint8), "hat": np.array([[2]], np.uint8),
            "image_index": np.array([["0001"]], dtype=object)}
    scipy.io.savemat(tmp_path / "a.mat", {"x_attribute": {"train": train, "test": test}})
    spec, parts = read_attribute_file(tmp_path / "a.mat")
    hat, bag = spec.index("hat"), spec.index("bag")
    assert parts["test"][1][hat] == 1 and parts["test"][1][bag] == 0
    assert parts["train"][2][hat] == 0 and parts["train"][7][hat] == 1 and parts["train"][7][bag] == 1


def test_market_attributes_joined_by_original_id(tmp_path):
    root = make_market_tree(tmp_path / "m")
    parts = _random_parts(MARKET_ATTRIBUTES, [2, 7, 10, 99], [1])  # id 3 has no test entry
    write_attribute_file(root / "market_attribute.mat", MARKET_ATTRIBUTES, parts)
    split = load_market1501(root)  # "auto" finds the file
    assert split.attribute_spec == MARKET_ATTRIBUTES and split.has_attributes
    for r in split.train:
        np.testing.assert_array_equal(r.attributes, parts["train"][r.extra["orig_pid"]])
    for r in split.query + split.gallery:
        if r.pid == 1:
            np.testing.assert_array_equal(r.attributes, parts["test"][1])
        else:  # distractors and ids without an entry
            assert r.attributes is None
    assert len(load_market1501(root, attribute_file=None).attribute_spec) == 0


def test_attribute_file_with_wrong_ids_names_the_file(tmp_path):
    root = make_market_tree(tmp_path / "m")
    parts = _random_parts(MARKET_ATTRIBUTES, [2, 7], [1, 3])  # training id 10 missing
    path = write_attribute_file(tmp_path / "wrong.mat", MARKET_ATTRIBUTES, parts)
    with pytest.raises(ValueError, match=r"wrong\.mat.*training ids"):
        load_market1501(root, attribute_file=path)
    with pytest.raises(FileNotFoundError, match="absent.mat"):
        load_market1501(root, attribute_file=tmp_path / "absent.mat")


# ---------------------------------------------------------------- keypoints

OPENPOSE = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
            "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
            "right_eye", "left_eye", "right_ear", "left_ear"]


def _reference_coco(yx18, sx=1.0, sy=1.0):
    out = np.zeros((17, 3), np.float32)
    for c, name in enumerate(COCO17_NAMES):
        y, x = yx18[OPENPOSE.index(name)]
        out[c] = (x * sx, y * sy, 1) if (x >= 0 and y >= 0) else (-1, -1, 0)
    return out


def test_openpose_to_coco_against_reference():
    rng = np.random.default_rng(1)
    for _ in range(20):
        yx = np.stack([rng.integers(0, 128, 18), rng.integers(0, 64, 18)], 1).astype(np.float32)
        yx[rng.random(18) < 0.3] = -1
        np.testing.assert_allclose(openpose18_to_coco17(yx), _reference_coco(yx))
        np.testing.assert_allclose(openpose18_to_coco17(yx, image_size=(128, 256)), _reference_coco(yx, 2.0, 2.0))
        np.testing.assert_allclose(openpose18_to_coco17(yx, image_size=(64, 128)), _reference_coco(yx))
    with pytest.raises(ValueError, match="18, 2"):
        openpose18_to_coco17(np.zeros((17, 2)))


def test_coco_to_openpose_inverts_and_makes_neck():
    rng = np.random.default_rng(2)
    kp = np.concatenate([rng.uniform(0, 60, (17, 2)), (rng.random((17, 1)) > 0.2)], 1).astype(np.float32)
    kp[kp[:, 2] == 0, :2] = -1
    yx = coco17_to_openpose18(kp)
    np.testing.assert_allclose(openpose18_to_coco17(yx), kp)
    ls, rs = COCO17_NAMES.index("left_shoulder"), COCO17_NAMES.index("right_shoulder")
    if kp[ls, 2] and kp[rs, 2]:
        np.testing.assert_allclose(yx[1], [(kp[ls, 1] + kp[rs, 1]) / 2, (kp[ls, 0] + kp[rs, 0]) / 2])
    kp[ls, 2] = 0
    assert (coco17_to_openpose18(kp)[1] == -1).all()


def test_pose_csv_round_trip_and_errors(tmp_path):
    yx = np.full((18, 2), -1.0, np.float32)
    yx[:5] = [[10, 20], [11, 21], [12.5, 22], [0, 0], [127, 63]]
    path = write_pose_csv(tmp_path / "p.csv", {"0002_c1s1_000451_03.jpg": yx})
    text = path.read_text().splitlines()
    assert text[0] == "name:keypoints_y:keypoints_x" and text[1].startswith("0002_c1s1_000451_03.jpg: [10, 11, 12.50, 0, 127, -1")
    read = read_pose_csv(path)
    np.testing.assert_allclose(read["0002_c1s1_000451_03.jpg"], yx)
    (tmp_path / "bad.csv").write_text("name:keypoints_y:keypoints_x\nx.jpg: [1, 2]: [3, 4]\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2"):
        read_pose_csv(tmp_path / "bad.csv")


def test_market_keypoints_joined_by_basename(tmp_path):
    root = make_market_tree(tmp_path / "m")
    rng = np.random.default_rng(3)
    train_poses = {n: rng.integers(-1, 60, (18, 2)).astype(np.float32) for n in TRAIN[:3]}
    test_poses = {n: rng.integers(-1, 60, (18, 2)).astype(np.float32) for n in GALLERY}
    write_pose_csv(root / "market-annotation-train.csv", train_poses)
    write_pose_csv(root / "market-annotation-test.csv", test_poses)
    split = load_market1501(root)
    for r in split.train + split.gallery:
        name = r.path.split("/")[-1]
        poses = train_poses if "bounding_box_train" in r.path else test_poses
        if name in poses:
            np.testing.assert_allclose(r.keypoints, _reference_coco(poses[name]))
            assert r.keypoints.dtype == np.float32 and r.keypoints.shape == (17, 3)
        else:
            assert r.keypoints is None
    scaled = load_market1501(root, keypoint_image_size=(128, 256))
    name = scaled.train[0].path.split("/")[-1]
    np.testing.assert_allclose(scaled.train[0].keypoints, _reference_coco(train_poses[name], 2, 2))
    assert not load_market1501(root, keypoint_files=None).has_keypoints
    write_pose_csv(tmp_path / "other.csv", {"9999_c1s1_000001_01.jpg": np.zeros((18, 2))})
    with pytest.raises(ValueError, match="other.csv"):
        load_market1501(root, keypoint_files=tmp_path / "other.csv")


def test_a_keypoint_file_that_misses_a_subset_is_reported_with_counts(tmp_path, caplog):
    """Issue 19: a keypoint file that matches no image of a subset no longer loads silently: a
    warning with counts per subset, as for attribute files."""
    root = make_market_tree(tmp_path / "m")
    rng = np.random.default_rng(3)
    write_pose_csv(root / "market-annotation-train.csv",
                   {n: rng.integers(0, 60, (18, 2)).astype(np.float32) for n in TRAIN[:3]})
    with caplog.at_level("WARNING"):
        split = load_market1501(root)
    message = " ".join(r.getMessage() for r in caplog.records if "covers only" in r.getMessage())
    assert f"3/{len(split.train)} train images" in message
    assert f"0/{len(split.query)} query images" in message and f"0/{len(split.gallery)} gallery images" in message


# ---------------------------------------------------------------- images

def test_read_image_and_verify_reports_every_bad_file(tmp_path):
    good = []
    for i in range(3):
        path = tmp_path / f"good{i}.png"
        Image.new("RGB", (8, 16), (i * 40, 0, 0)).save(path)
        good.append(path)
    image = read_image(good[1])
    assert image.mode == "RGB" and image.size == (8, 16) and image.getpixel((0, 0)) == (40, 0, 0)
    Image.new("L", (4, 4)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").mode == "RGB"

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    truncated = tmp_path / "truncated.jpg"
    Image.new("RGB", (64, 128), (10, 200, 30)).save(tmp_path / "full.jpg", quality=95)
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    for bad in (garbage, truncated):
        with pytest.raises(ImageReadError, match=bad.name):
            read_image(bad)
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_image(tmp_path / "absent.png")

    paths = [good[0], garbage, good[1], truncated, good[2]]
    assert verify_images(good, progress=False) == []
    with pytest.raises(ImageReadError) as info:
        verify_images(paths, progress=False)
    assert "garbage.jpg" in str(info.value) and "truncated.jpg" in str(info.value) and "2 of 5" in str(info.value)
    bad = verify_images(paths, progress=False, raise_on_error=False)
    assert [p.split("/")[-1] for p, _ in bad] == ["garbage.jpg", "truncated.jpg"]


# ---------------------------------------------------------------- CUHK03

def test_cuhk03_market_style(tmp_path):
    make_market_tree(tmp_path / "cuhk03" / "labeled",
                     train=["0001_c1_1.png", "0003_c2_2.png"], query=["0005_c1_1.png"], gallery=["0005_c2_3.png"])
    split = load_cuhk03(tmp_path / "cuhk03", variant="labeled")
    assert split.name == "cuhk03_labeled" and len(split.train) == 2 and split.query[0].pid == 5
    with pytest.raises(FileNotFoundError, match="cuhk03_new_protocol_config_detected.mat"):
        load_cuhk03(tmp_path / "cuhk03", variant="detected")
    with pytest.raises(ValueError, match="variant"):
        load_cuhk03(tmp_path / "cuhk03", variant="both")


def _write_protocol(root, variant="labeled"):
    files = [f"{pair}_{pid:03d}_{view}_{img:02d}.png" for pair, pid in ((1, 1), (1, 2), (2, 1))
             for view in (1, 2) for img in (1, 2)]
    labels = [1] * 4 + [2] * 4 + [3] * 4
    cams = [int(f.split("_")[2]) for f in files]
    filelist = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        filelist[i, 0] = f
    train_idx, query_idx, gallery_idx = [1, 2, 3, 4, 5, 6, 7, 8], [9, 11], [10, 12]  # 1-based
    scipy.io.savemat(root / f"cuhk03_new_protocol_config_{variant}.mat", {
        "filelist": filelist, "labels": np.array(labels, np.uint16)[:, None], "camId": np.array(cams, np.uint8)[:, None],
        "train_idx": np.array(train_idx, np.uint16)[:, None], "query_idx": np.array(query_idx, np.uint16)[:, None],
        "gallery_idx": np.array(gallery_idx, np.uint16)[:, None]})
    return files, labels, cams, train_idx, query_idx, gallery_idx


def test_cuhk03_protocol_mat_form(tmp_path):
    root = tmp_path / "cuhk03"
    (root / "images_labeled").mkdir(parents=True)
    files, labels, cams, train_idx, query_idx, gallery_idx = _write_protocol(root)
    for f in files:
        (root / "images_labeled" / f).write_bytes(b"")
    split = load_dataset("cuhk03", root, variant="labeled")
    for records, index in ((split.query, query_idx), (split.gallery, gallery_idx)):
        assert [r.path.split("/")[-1] for r in records] == [files[i - 1] for i in index]
        assert [r.pid for r in records] == [labels[i - 1] for i in index]
        assert [r.camid for r in records] == [cams[i - 1] - 1 for i in index]
    assert sorted({r.pid for r in split.train}) == [0, 1] and len(split.train) == 8
    (root / "images_labeled" / files[10]).unlink()
    with pytest.raises(FileNotFoundError, match=files[10]):
        load_cuhk03(root)


# ---------------------------------------------------------------- CUHK01

def test_cuhk01_split(tmp_path):
    for pid in range(1, 11):
        for img in range(1, 5):
            (tmp_path / f"{pid:04d}{img:03d}.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    split = load_cuhk01(tmp_path, num_train_ids=4, seed=0)
    assert split.num_train_pids == 4 and len(split.train) == 16
    assert len(split.query) == len(split.gallery) == 12
    assert {r.camid for r in split.query} == {0} and {r.camid for r in split.gallery} == {1}
    assert all(int(r.path[-7:-4]) <= 2 for r in split.query)
    assert {r.pid for r in split.query} == {r.pid for r in split.gallery}
    assert not {r.extra["orig_pid"] for r in split.train} & {r.pid for r in split.query}
    other = load_cuhk01(tmp_path, num_train_ids=4, seed=0)
    assert [r.path for r in other.train] == [r.path for r in split.train]
    with pytest.raises(ValueError, match="num_train_ids"):
        load_cuhk01(tmp_path, num_train_ids=10)
    (tmp_path / "0001005.png").write_bytes(b"")
    with pytest.raises(ValueError, match="0001005.png"):
        load_cuhk01(tmp_path)


# ---------------------------------------------------------------- folder / dispatch

def test_folder_csv(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "split.csv").write_text(
        "path,pid,camid,split\na.jpg,40,0,train\nb.jpg,40,1,train\nc.jpg,12,0,train\n"
        "d.jpg,7,0,query\ne.jpg,7,1,gallery\n")
    split = load_folder(tmp_path, csv="split.csv")
    assert [r.pid for r in split.train] == [1, 1, 0] and [r.extra["orig_pid"] for r in split.train] == [40, 40, 12]
    assert split.query[0].pid == 7 and split.gallery[0].camid == 1
    (tmp_path / "nosplit.csv").write_text("path, pid, camid\na.jpg,3,0\nb.jpg,5,1\n")
    split = load_dataset("folder", tmp_path, csv=tmp_path / "nosplit.csv")
    assert len(split.train) == 2 and not split.query
    (tmp_path / "bad.csv").write_text("path,pid,camid,split\na.jpg,3,0,test\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2"):
        load_folder(tmp_path, csv="bad.csv")
    (tmp_path / "missing.csv").write_text("path,pid,camid\nzzz.jpg,3,0\n")
    with pytest.raises(FileNotFoundError, match="zzz.jpg"):
        load_folder(tmp_path, csv="missing.csv")
    (tmp_path / "cols.csv").write_text("file,person\na.jpg,3\n")
    with pytest.raises(ValueError, match="camid"):
        load_folder(tmp_path, csv="cols.csv")


def test_folder_market_layout_and_dispatch(tmp_path):
    root = make_market_tree(tmp_path / "mine")
    assert len(load_folder(root).gallery) == len([n for n in GALLERY if not n.startswith("-1")])
    assert len(load_dataset("market-1501", root, attribute_file=None).train) == len(TRAIN)
    with pytest.raises(ValueError, match="unknown dataset 'viper'"):
        load_dataset("viper", root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty/bounding_box_train"):
        load_folder(tmp_path / "empty")
