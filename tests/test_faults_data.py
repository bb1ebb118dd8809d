"""Data-side faults (issue 8): the generator never loses a user's data, bad files give errors naming them."""
from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reidlab.data import detect_dataset, load_dataset, load_market1501, read_attribute_file, write_attribute_file
from reidlab.data import synthetic
from reidlab.data.attributes import MARKET_ATTRIBUTES
from reidlab.data.images import ImageReadError, check_image_header, read_image, to_rgb, verify_images
from reidlab.data.synthetic import load_synthetic, make_synthetic_dataset, read_marker

TINY = dict(num_ids=4, images_per_id=2, occluder_fraction=0.5, progress=False)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _user_market_folder(root: Path) -> Path:
    """What a user's Market copy looks like: the three split folders and nothing of the generator's."""
    for subset, names in {
        "bounding_box_train": ["0001_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg"],
        "bounding_box_test": ["0003_c1s1_000003_01.jpg", "0004_c2s1_000004_01.jpg"],
        "query": ["0003_c2s1_000005_01.jpg", "0004_c1s1_000006_01.jpg"],
    }.items():
        (root / subset).mkdir(parents=True)
        for i, name in enumerate(names):
            Image.fromarray(np.full((16, 8, 3), 40 * i + 20, np.uint8)).save(root / subset / name)
    return root


# ----------------------------------------------------------------------------- the generator and user folders
@pytest.mark.parametrize("overwrite", [False, True])
def test_user_folder_survives_the_generator(tmp_path, overwrite):
    user = _user_market_folder(tmp_path / "my_market")
    before = _snapshot(user)
    with pytest.raises(ValueError, match=r"my_market.*--overwrite"):
        make_synthetic_dataset(user, overwrite=overwrite, **TINY)
    with pytest.raises(ValueError, match="no synthetic-dataset marker"):
        load_dataset("synthetic", user)  # what `summary synthetic --root` and `train --data-root` did
    assert _snapshot(user) == before, "the user's files must be untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_market"], "no temporary folder may remain"


def test_foreign_files_in_a_marker_folder_are_never_deleted(tmp_path):
    root = make_synthetic_dataset(tmp_path / "s", **TINY)
    (root / "notes.txt").write_text("mine")
    (root / "query" / "extra_c1s1_0.jpg").write_bytes(b"mine too")
    before = _snapshot(root)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"did not write \(notes.txt, query/extra_c1s1_0.jpg\)"):
            make_synthetic_dataset(root, overwrite=overwrite, **{**TINY, "seed": 9})
    assert _snapshot(root) == before
    assert make_synthetic_dataset(root, **TINY) == root, "same parameters: reused despite the extra files"


def test_a_crafted_marker_cannot_point_outside_the_folder(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    root = make_synthetic_dataset(tmp_path / "s", **TINY)
    meta = json.loads((root / "meta.json").read_text())
    meta["files"].append("../victim.txt")
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="does not list the files"):
        make_synthetic_dataset(root, **{**TINY, "seed": 2})
    assert victim.read_text() == "precious"


def test_marker_folder_is_recreated_when_parameters_change(tmp_path):
    root = tmp_path / "synthetic"
    first = load_synthetic(root, **TINY)  # a notebook run with seed 0 ...
    second = load_synthetic(root, **{**TINY, "seed": 1})  # ... then `papermill -p seed 1`: no error
    assert read_marker(root)["params"]["seed"] == 1
    assert {Path(r.path).name for r in first.train} != {Path(r.path).name for r in second.train}
    listed = set(read_marker(root)["files"])
    assert listed == {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}, "old files must be gone"


def test_version_1_marker_without_file_list_is_reused_and_replaced(tmp_path):
    root = make_synthetic_dataset(tmp_path / "s", **TINY)
    meta = json.loads((root / "meta.json").read_text())
    del meta["files"]  # what the first generator wrote
    (root / "meta.json").write_text(json.dumps(meta))
    stamp = (root / "meta.json").stat().st_mtime_ns
    make_synthetic_dataset(root, **TINY)
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    make_synthetic_dataset(root, **{**TINY, "seed": 4})
    assert set(read_marker(root)["files"]) == {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_newer_generator_version_needs_overwrite(tmp_path):
    root = make_synthetic_dataset(tmp_path / "s", **TINY)
    meta = json.loads((root / "meta.json").read_text())
    meta["version"] = synthetic.GENERATOR_VERSION + 1
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="newer generator.*--overwrite"):
        make_synthetic_dataset(root, **TINY)
    make_synthetic_dataset(root, overwrite=True, **TINY)
    assert read_marker(root)["version"] == synthetic.GENERATOR_VERSION


def _fail_while_writing(*args, **kwargs):
    raise OSError("simulated: no space left on device")


def test_failure_mid_generation_leaves_no_half_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "_write_identities", _fail_while_writing)
    with pytest.raises(OSError, match="simulated"):
        make_synthetic_dataset(tmp_path / "new", **TINY)
    assert list(tmp_path.iterdir()) == [], "neither the dataset nor its temporary folder may remain"
    monkeypatch.undo()
    root = make_synthetic_dataset(tmp_path / "s", **TINY)
    before = _snapshot(root)
    monkeypatch.setattr(synthetic, "_write_identities", _fail_while_writing)
    with pytest.raises(OSError, match="simulated"):
        make_synthetic_dataset(root, **{**TINY, "seed": 3})
    assert _snapshot(root) == before, "a failed re-creation must leave the old dataset whole"
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_temporary_folder_of_a_killed_run_is_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".s.partial-{dead.pid}-0123abcd"
    (stale / "query").mkdir(parents=True)
    (stale / synthetic._PARTIAL_TAG).touch()
    finished = tmp_path / f".s.old-{dead.pid}-4567cdef"  # killed after a rename: a whole marker dataset
    make_synthetic_dataset(tmp_path / "other", **TINY).rename(finished)
    untagged = tmp_path / f".s.partial-{dead.pid}-89abcdef"  # neither tagged nor a marker dataset: kept
    untagged.mkdir()
    (untagged / "thesis.tex").write_text("precious")
    make_synthetic_dataset(tmp_path / "s", **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [untagged.name, "s"]


# ----------------------------------------------------------------------------- load_dataset / detect_dataset
def test_load_dataset_without_generation_never_writes(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.*reidlab synth --root"):
        load_dataset("synthetic", tmp_path / "missing", generate=False)
    assert not (tmp_path / "missing").exists()
    user = _user_market_folder(tmp_path / "user")
    before = _snapshot(user)
    with pytest.raises(FileNotFoundError, match="no synthetic dataset"):
        load_dataset("synthetic", user, generate=False)
    assert _snapshot(user) == before
    make_synthetic_dataset(tmp_path / "s", **TINY)
    assert len(load_dataset("synthetic", tmp_path / "s", generate=False).train) > 0


def test_detect_dataset(tmp_path):
    assert detect_dataset(tmp_path / "missing") is None
    assert detect_dataset(tmp_path) is None  # empty
    assert detect_dataset(make_synthetic_dataset(tmp_path / "s", **TINY)) == "synthetic"
    assert detect_dataset(_user_market_folder(tmp_path / "m")) == "market1501"
    duke = tmp_path / "duke"
    for subset in ("bounding_box_train", "bounding_box_test", "query"):
        (duke / subset).mkdir(parents=True)
        (duke / subset / "0001_c2_f0046182.jpg").write_bytes(b"")
    assert detect_dataset(duke) == "dukemtmc"
    cuhk03 = tmp_path / "cuhk03"
    cuhk03.mkdir()
    (cuhk03 / "cuhk03_new_protocol_config_labeled.mat").write_bytes(b"")
    assert detect_dataset(cuhk03) == "cuhk03"
    cuhk01 = tmp_path / "cuhk01" / "campus"
    cuhk01.mkdir(parents=True)
    for name in ("0001001.png", "0001003.png"):
        (cuhk01 / name).write_bytes(b"")
    assert detect_dataset(cuhk01.parent) == "cuhk01"


# ----------------------------------------------------------------------------- images
def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 257, 25700, 32768], [40000, 65000, 65535, 128]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = np.asarray(read_image(path))
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (2, 4, 3)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 2], expected)
    wide = Image.fromarray(values.astype(np.int32))  # mode "I": 16-bit data in a 32-bit image
    np.testing.assert_array_equal(np.asarray(to_rgb(wide))[..., 1], expected)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds none: a decompression bomb in 60 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.fixture
def bad_images(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(good)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    cut_jpeg = tmp_path / "cut.jpg"
    cut_jpeg.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    png = tmp_path / "whole.png"
    Image.open(good).save(png)
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    return good, [bomb, empty, cut_jpeg, cut_png]


def test_decompression_bomb_is_an_error_naming_the_file(bad_images):
    _, (bomb, *_) = bad_images
    for check in (read_image, check_image_header):
        with pytest.raises(ImageReadError, match="bomb.png.*decompression bomb"):
            check(bomb)


def test_image_over_the_pixel_limit_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: PIL itself only warns
    with pytest.warns(Image.DecompressionBombWarning):
        with pytest.raises(ImageReadError, match="big.png.*MAX_IMAGE_PIXELS"):
            read_image(path)


@pytest.mark.parametrize("full_decode", [True, False])
def test_verify_images_lists_every_bad_file(bad_images, full_decode):
    good, bad = bad_images
    paths = [good, *bad]
    found = verify_images(paths, full_decode=full_decode, progress=False, raise_on_error=False)
    assert [Path(p).name for p, _ in found] == [p.name for p in bad]
    assert all(Path(p).name in reason for p, reason in found)
    with pytest.raises(ImageReadError, match=r"4 of 5 images are unreadable(.|\n)*bomb.png(.|\n)*cut.png"):
        verify_images(paths, full_decode=full_decode, progress=False)


# ----------------------------------------------------------------------------- attribute files
def test_attribute_mat_without_the_struct_is_a_one_line_error(tmp_path):
    path = tmp_path / "market_attribute.mat"
    scipy.io.savemat(path, {"market_attribute": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"market_attribute.mat: variable 'market_attribute' is not a 1x1 MATLAB struct") as info:
        read_attribute_file(path)
    assert "\n" not in str(info.value)
    scipy.io.savemat(path, {"market_attribute": {"train": np.zeros(3), "test": np.zeros(3)}})
    with pytest.raises(ValueError, match=r"'market_attribute.train' is not a 1x1 MATLAB struct"):
        read_attribute_file(path)


def test_partial_attribute_file_warns_with_counts(tmp_path, caplog):
    root = _user_market_folder(tmp_path / "market")
    zeros = np.zeros(len(MARKET_ATTRIBUTES), np.int64)
    parts = {"train": {1: zeros, 2: zeros}, "test": {3: zeros}}  # id 4 has no attributes
    write_attribute_file(root / "market_attribute.mat", MARKET_ATTRIBUTES, parts)
    with caplog.at_level(logging.WARNING):
        split = load_market1501(root, keypoint_files=None)
    assert sum(r.attributes is None for r in split.query) == 1
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "1/2 query images" in message and "1/2 gallery images" in message
    assert "train images" not in message


def test_concurrent_generation_into_one_folder(tmp_path):
    """Several processes (DDP ranks, a notebook grid) asking for the same dataset at once all succeed."""
    code = (
        "import sys; from reidlab.data.synthetic import make_synthetic_dataset; "
        "make_synthetic_dataset(sys.argv[1], num_ids=4, images_per_id=2, seed=int(sys.argv[2]), progress=False)"
    )
    for seed in (0, 1):  # create, then re-create with new parameters
        runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s"), str(seed)]) for _ in range(3)]
        assert [run.wait(timeout=120) for run in runs] == [0, 0, 0]
        assert [p.name for p in tmp_path.iterdir()] == ["s"]
        meta = read_marker(tmp_path / "s")
        assert meta["params"]["seed"] == seed
        assert set(meta["files"]) == {str(p.relative_to(tmp_path / "s")) for p in (tmp_path / "s").rglob("*") if p.is_file()}


def test_non_utf8_split_csv_and_unreadable_protocol_file_name_the_file(tmp_path):
    from reidlab.data.cuhk03 import read_protocol_file
    from reidlab.data.folder import read_split_csv

    csv_path = tmp_path / "split.csv"
    csv_path.write_bytes("path,pid,camid\n\xe9t\xe9.jpg,1,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"split.csv is not UTF-8"):
        read_split_csv(csv_path, tmp_path)
    protocol = tmp_path / "cuhk03_new_protocol_config_labeled.mat"
    protocol.write_text("not a mat file")
    with pytest.raises(ValueError, match=r"cuhk03_new_protocol_config_labeled.mat as a MATLAB"):
        read_protocol_file(protocol)
