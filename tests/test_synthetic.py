"""The synthetic dataset: determinism, layout, annotations read back through the real loaders."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import SYNTHETIC_TEST_KWARGS
from reidlab.data.synthetic import (
    LOWER_COLOURS,
    MARKET_ATTRIBUTE_NAMES,
    UPPER_COLOURS,
    make_synthetic_dataset,
    plan_dataset,
    read_identities,
    render_image,
)

TINY = dict(num_ids=6, images_per_id=3, occluder_fraction=0.5)


def _plan_for(root: Path):
    meta = json.loads((root / "meta.json").read_text())
    plan = plan_dataset(**meta["params"])
    return plan, {spec.relpath: spec for spec in plan.images}


def _relpath(record_path: str) -> str:
    path = Path(record_path)
    return f"{path.parent.name}/{path.name}"


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = _all_files(make_synthetic_dataset(tmp_path / "a", seed=3, progress=False, **TINY))
    b = _all_files(make_synthetic_dataset(tmp_path / "b", seed=3, progress=False, **TINY))
    c = _all_files(make_synthetic_dataset(tmp_path / "c", seed=4, progress=False, **TINY))
    assert a.keys() == b.keys()
    assert all(a[name] == b[name] for name in a), "same seed must give byte-identical files"
    jpgs_a = sorted(n for n in a if n.endswith(".jpg"))
    jpgs_c = sorted(n for n in c if n.endswith(".jpg"))
    assert jpgs_a != jpgs_c or any(a[n] != c[n] for n in jpgs_a)


def test_render_is_deterministic_per_image():
    plan = plan_dataset(seed=1, **TINY)
    spec = plan.images[5]
    one = render_image(spec, plan.cameras, plan.identities, seed=1)
    two = render_image(spec, plan.cameras, plan.identities, seed=1)
    other_plan = plan_dataset(seed=2, **TINY)
    other = render_image(other_plan.images[5], other_plan.cameras, other_plan.identities, seed=2)
    np.testing.assert_array_equal(one.image, two.image)
    np.testing.assert_array_equal(one.keypoints, two.keypoints)
    assert not np.array_equal(one.image, other.image)


def test_layout_names_and_meta(synthetic_root):
    meta = json.loads((synthetic_root / "meta.json").read_text())
    assert meta["version"] >= 1 and meta["params"]["num_ids"] == SYNTHETIC_TEST_KWARGS["num_ids"]
    for sub in ("bounding_box_train", "bounding_box_test", "query"):
        files = sorted((synthetic_root / sub).glob("*.jpg"))
        assert len(files) == meta["counts"][sub] > 0
        with Image.open(files[0]) as im:
            assert im.size == (64, 128) and im.mode == "RGB"
    test_names = [p.name for p in (synthetic_root / "bounding_box_test").glob("*.jpg")]
    assert any(n.startswith("0000_") for n in test_names), "distractors (id 0) expected in the gallery"
    assert any(n.startswith("-1_") for n in test_names), "junk (id -1) expected in the gallery folder"
    header = (synthetic_root / "market-annotation-test.csv").read_text().splitlines()[0]
    assert header == "name:keypoints_y:keypoints_x"


def test_split_has_valid_queries_and_drops_junk(synthetic_split):
    split = synthetic_split
    assert split.num_train_pids == SYNTHETIC_TEST_KWARGS["num_ids"] // 2
    assert {r.pid for r in split.train} == set(range(split.num_train_pids))
    assert all(r.pid != -1 for r in split.gallery + split.query)
    assert any(r.pid == 0 for r in split.gallery)
    assert split.num_train_cams > 1
    gallery = {(r.pid, r.camid) for r in split.gallery}
    for q in split.query:
        assert any(pid == q.pid and cam != q.camid for pid, cam in gallery), f"query {q.path} has no valid match"
    # query keypoints come from the test CSV too
    assert all(r.keypoints is not None for r in split.query + split.gallery + split.train)


def _expected_attributes(row, names) -> list[int]:
    """Independent reference: the loader's 0-based coding from the generator's identity table."""
    expected = []
    for name in names:
        if name in ("age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat", "gender"):
            expected.append(int(row[name]) - 1)
        elif name.startswith("up"):
            expected.append(int(row["upper_colour"] == name[2:]))
        elif name.startswith("down"):
            expected.append(int(row["lower_colour"] == name[4:]))
        else:
            raise AssertionError(f"unexpected attribute {name}")
    return expected


def test_attributes_read_back_equal_what_was_drawn(synthetic_root, synthetic_split):
    table = read_identities(synthetic_root)
    spec = synthetic_split.attribute_spec
    assert set(spec.names) == set(MARKET_ATTRIBUTE_NAMES)
    assert spec.num_classes[spec.index("age")] == 4
    checked = 0
    for r in synthetic_split.train + synthetic_split.query + synthetic_split.gallery:
        pid = r.extra.get("orig_pid", r.pid)
        if pid == 0:
            assert r.attributes is None or (np.asarray(r.attributes) == -1).all()
            continue
        assert list(np.asarray(r.attributes)) == _expected_attributes(table.loc[pid], spec.names), r.path
        checked += 1
    assert checked > 50
    # one upper and one lower colour per identity
    assert set(table["upper_colour"]) <= set(UPPER_COLOURS) and set(table["lower_colour"]) <= set(LOWER_COLOURS)


def test_attribute_file_has_the_real_market_structure(synthetic_root, shared_data):
    from conftest import shared_file

    real = scipy.io.loadmat(shared_file(shared_data, "annotations/market1501/market_attribute.mat"))["market_attribute"]
    ours = scipy.io.loadmat(synthetic_root / "market_attribute.mat")["market_attribute"]
    assert set(ours.dtype.names) == set(real.dtype.names) == {"train", "test"}
    for part in ("train", "test"):
        real_part, our_part = real[part][0, 0], ours[part][0, 0]
        assert set(our_part.dtype.names) == set(real_part.dtype.names)
        for name in MARKET_ATTRIBUTE_NAMES:
            values = our_part[name][0, 0]
            assert values.dtype == real_part[name][0, 0].dtype and values.shape[0] == 1
            assert set(np.unique(values)) <= ({1, 2, 3, 4} if name == "age" else {1, 2})
        index = our_part["image_index"][0, 0]
        assert index.dtype == object and isinstance(index[0, 0][0], str) and len(index[0, 0][0]) == 4


def test_visible_keypoints_lie_on_the_drawn_body(synthetic_root, synthetic_split):
    plan, by_path = _plan_for(synthetic_root)
    records = synthetic_split.train[:40] + synthetic_split.query[:10] + synthetic_split.gallery[:20]
    n_visible = 0
    for r in records:
        spec = by_path[_relpath(r.path)]
        rendered = render_image(spec, plan.cameras, plan.identities, plan.params["seed"])
        # the loader's keypoints (via CSV, OpenPose-18) are exactly what the generator drew
        np.testing.assert_array_equal(np.asarray(r.keypoints), rendered.keypoints, err_msg=r.path)
        visible = rendered.keypoints[:, 2] > 0
        xs, ys = rendered.keypoints[visible, 0].astype(int), rendered.keypoints[visible, 1].astype(int)
        assert rendered.person_mask[ys, xs].all(), r.path
        assert not rendered.occluder_mask[ys, xs].any(), r.path
        n_visible += int(visible.sum())
        # and the stored JPEG is that rendering (up to compression)
        stored = np.asarray(Image.open(r.path), dtype=np.float32)
        error = np.abs(stored - rendered.image).mean()
        assert error < 10.0, (r.path, error)
        other = render_image(plan.images[(spec.index + 1) % len(plan.images)], plan.cameras, plan.identities, plan.params["seed"])
        assert np.abs(stored - other.image).mean() > 2 * error
    assert n_visible > 0.6 * 17 * len(records)


def test_occluder_masks_exist_and_cover_the_occluder(synthetic_root, synthetic_split):
    plan, by_path = _plan_for(synthetic_root)
    occluded = [r for r in synthetic_split.train + synthetic_split.query + synthetic_split.gallery if "mask_path" in r.extra]
    total = len(synthetic_split.train) + len(synthetic_split.query) + len(synthetic_split.gallery)
    assert 0.1 * total < len(occluded) < 0.45 * total  # occluder_fraction 0.25
    kinds = set()
    for r in occluded[:30]:
        mask = np.asarray(Image.open(r.extra["mask_path"])) > 127
        assert mask.shape == (128, 64) and mask.any(), r.extra["mask_path"]
        spec = by_path[_relpath(r.path)]
        kinds.add(spec.occluder)
        with_occ = render_image(spec, plan.cameras, plan.identities, plan.params["seed"])
        without = render_image(spec, plan.cameras, plan.identities, plan.params["seed"], draw_occluder=False)
        np.testing.assert_array_equal(with_occ.occluder_mask, mask)
        changed = (with_occ.image != without.image).any(axis=2)
        assert not (changed & ~mask).any(), "the occluder changed pixels outside its mask"
        assert changed[mask].mean() > 0.5, "the mask covers pixels where no occluder was drawn"
        # no visible keypoint under the occluder
        kp = np.asarray(r.keypoints)
        visible = kp[:, 2] > 0
        assert not mask[kp[visible, 1].astype(int), kp[visible, 0].astype(int)].any()
    assert len(kinds) >= 2
    unoccluded = [r for r in synthetic_split.train if "mask_path" not in r.extra]
    assert unoccluded and not (synthetic_root / "masks" / Path(_relpath(unoccluded[0].path)).with_suffix(".png")).exists()


def test_attributes_do_not_give_identity_away():
    plan = plan_dataset()  # the default size, planning only (no drawing)
    vectors: dict[tuple, list] = {}
    for ident in plan.identities:
        vectors.setdefault(tuple(ident.market_attributes().values()), []).append(ident)
    twins = [group for group in vectors.values() if len(group) > 1]
    assert twins, "some identities must share all 27 attributes"
    for group in twins:
        finer = {(g.upper_rgb, g.pattern, g.shoe_rgb, round(g.width, 3), round(g.height, 3)) for g in group}
        assert len(finer) == len(group), "attribute twins must differ in their finer traits"


def test_reuse_regenerate_on_new_parameters_and_overwrite(tmp_path):
    root = make_synthetic_dataset(tmp_path / "s", progress=False, **TINY)
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert make_synthetic_dataset(root, progress=False, **TINY) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp, "same parameters must reuse the dataset"
    old_images = {p.name for p in root.rglob("*.jpg")}
    # Other parameters: the folder is the generator's own, so it is re-created in place (data keyed by parameters).
    make_synthetic_dataset(root, progress=False, **{**TINY, "seed": 5})
    meta = json.loads((root / "meta.json").read_text())
    assert meta["params"]["seed"] == 5
    assert sorted(meta["files"]) == sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert {p.name for p in root.rglob("*.jpg")} != old_images, "no image of the old dataset may stay behind"
    stamp = (root / "meta.json").stat().st_mtime_ns
    make_synthetic_dataset(root, progress=False, overwrite=True, **{**TINY, "seed": 5})
    assert (root / "meta.json").stat().st_mtime_ns != stamp, "overwrite=True re-creates even with equal parameters"
    assert [p.name for p in tmp_path.iterdir()] == ["s"], "no temporary sibling folder may remain"
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="--overwrite"):
        make_synthetic_dataset(foreign, progress=False, **TINY)
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_load_synthetic_without_data_and_no_generation(tmp_path):
    from reidlab.data.synthetic import load_synthetic

    with pytest.raises(FileNotFoundError, match="reidlab synth"):
        load_synthetic(tmp_path / "nothing", generate_if_missing=False)


@pytest.mark.slow
def test_default_size_generation_time(tmp_path):
    """Reports the time of the default dataset (target: under 30 s on one core); asserts only its size."""
    start, cpu_start = time.perf_counter(), time.process_time()
    root = make_synthetic_dataset(tmp_path / "default", progress=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    meta = json.loads((root / "meta.json").read_text())
    images = sum(meta["counts"].values())
    print(f"\nsynthetic default size: {meta['train_ids'] + meta['test_ids']} ids, {images} images "
          f"in {seconds:.1f} s wall, {cpu_seconds:.1f} s CPU")
    assert meta["train_ids"] + meta["test_ids"] >= 300 and images >= 3000
