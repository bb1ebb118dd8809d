"""Pose estimator path (CPU, randomly initialised keypointrcnn: shapes, cache, resume, errors)
and the refusal of splits whose images lack keypoints (MSRA issue 13, item 4)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data.keypoints import read_pose_csv
from reidlab.data.pose import (
    KEYPOINTRCNN_FILE,
    KeypointRCNNSource,
    blazepose33_to_coco17,
    estimate_keypoints,
    estimate_split_keypoints,
    find_weight_file,
)
from reidlab.data.records import AttributeSpec, ImageRecord, ReIDSplit, check_requirements


class CountingSource:
    """A fake estimator: point i at (i, 2i); counts the images it saw."""

    name = "counting"

    def __init__(self):
        self.seen = 0

    def __call__(self, images):
        self.seen += len(images)
        out = np.zeros((len(images), 17, 3), np.float32)
        out[:, :, 0], out[:, :, 1], out[:, :, 2] = np.arange(17), 2 * np.arange(17), 1
        out[:, 0] = (-1, -1, 0)  # nose missing
        return out


def _images(folder, count, size=(32, 64)):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i + 1:04d}_c1s1_{i:06d}_00.jpg"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDLAB_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=KEYPOINTRCNN_FILE.replace(".", r"\.")):
        KeypointRCNNSource()
    (tmp_path / KEYPOINTRCNN_FILE).write_bytes(b"")
    assert find_weight_file(KEYPOINTRCNN_FILE) == tmp_path / KEYPOINTRCNN_FILE


def test_keypointrcnn_random_weights_shapes_cache_and_resume(tmp_path):
    torch.manual_seed(0)
    paths = _images(tmp_path, 5)
    source = KeypointRCNNSource(weights="random", min_size=64, max_size=128, person_threshold=0.0)
    out = source([np.asarray(Image.open(p)) for p in paths[:2]])
    assert out.shape == (2, 17, 3) and out.dtype == np.float32
    visible = out[..., 2] > 0
    assert np.isin(out[..., 2], (0, 1)).all() and (out[~visible][:, :2] == -1).all()
    cache = tmp_path / "x-annotation-train.csv"
    first = estimate_keypoints(paths[:3], source, cache, batch_size=2, progress=False)
    assert len(read_pose_csv(cache)) == 3 and set(first) == {p.name for p in paths[:3]}
    assert all(kp.shape == (17, 3) for kp in first.values())
    counting = CountingSource()  # resume: only the two new images are run
    second = estimate_keypoints(paths, counting, cache, batch_size=2, progress=False)
    assert counting.seen == 2 and len(read_pose_csv(cache)) == 5
    for p in paths[:3]:
        assert np.allclose(second[p.name], first[p.name], atol=0.01)  # cached rows are read back, not re-run
    assert second[paths[4].name][3].tolist() == [3.0, 6.0, 1.0] and second[paths[4].name][0, 2] == 0


def test_estimate_split_keypoints_writes_the_loader_csvs(tmp_path):
    paths = _images(tmp_path, 4)
    records = [ImageRecord(str(p), i, 0) for i, p in enumerate(paths)]
    split = ReIDSplit("dukemtmc", records[:2], records[2:3], records[3:], None, str(tmp_path))
    done = estimate_split_keypoints(split, CountingSource(), progress=False)
    assert all(r.keypoints is not None for r in (*done.train, *done.query, *done.gallery))
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "duke-annotation-query.csv", "duke-annotation-test.csv", "duke-annotation-train.csv"]


def test_blazepose_mapping_by_name():
    landmarks = np.zeros((33, 3), np.float32)
    landmarks[:, 0], landmarks[:, 1], landmarks[:, 2] = np.arange(33) / 40, 0.5, 1.0
    landmarks[27, 2] = 0.1  # left ankle not visible
    kp = blazepose33_to_coco17(landmarks, width=40, height=80)
    assert kp[0].tolist() == [-0.5, 39.5, 1.0]  # nose = landmark 0 at x=0 -> pixel centre -0.5
    assert kp[5, 0] == pytest.approx(11 - 0.5) and kp[16, 0] == pytest.approx(28 - 0.5)
    assert kp[15].tolist() == [-1.0, -1.0, 0.0]


def _split_with_missing():
    kp = np.zeros((17, 3), np.float32)
    train = [ImageRecord("a.jpg", 0, 0, None, kp), ImageRecord("b.jpg", 1, 0, None, None)]
    query = [ImageRecord("c.jpg", 5, 0, None, None), ImageRecord("d.jpg", 5, 1, None, None), ImageRecord("e.jpg", 6, 0, None, kp)]
    gallery = [ImageRecord("f.jpg", 5, 1, None, kp)]
    return ReIDSplit("market1501", train, query, gallery)


def test_check_requirements_names_counts_per_subset_and_fixes(caplog):
    split = _split_with_missing()
    with pytest.raises(ValueError) as info:
        check_requirements(split, {"keypoints"})
    message = str(info.value)
    assert "train 1/2" in message and "query 2/3" in message and "gallery" not in message.split("To fix")[0]
    assert "market1501_14point" in message and "pose estimator" in message and "--allow-missing-keypoints" in message
    with caplog.at_level("WARNING"):
        check_requirements(split, {"keypoints"}, allow_missing=True)
    assert "query 2/3" in caplog.text
    check_requirements(split, set())  # nothing required: no error
    check_requirements(split, {"keypoints"}, subsets=("gallery",))
    with pytest.raises(ValueError, match="images without attributes: train 2/2"):
        check_requirements(split, {"attributes"})


def test_split_without_attributes_has_an_empty_table():
    split = _split_with_missing()
    assert isinstance(split.attribute_spec, AttributeSpec) and len(split.attribute_spec) == 0
    table = split.attribute_spec.table()
    assert len(table) == 0 and list(table.columns) == ["attribute", "kind", "classes"]
    assert not split.has_attributes
