"""Transforms move keypoints with the pixels; the dataset produces the batch contract; P x K sampling."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from reidlab.data.dataset import ReIDDataset
from reidlab.data.records import COCO17_NAMES, AttributeSpec, ImageRecord
from reidlab.data.sampler import PKSampler
from reidlab.data.transforms import (
    Compose,
    PadRandomCrop,
    RandomHorizontalFlip,
    Resize,
    ToFloat,
    build_transforms,
)

L_SHOULDER, R_SHOULDER = COCO17_NAMES.index("left_shoulder"), COCO17_NAMES.index("right_shoulder")
L_WRIST, NOSE = COCO17_NAMES.index("left_wrist"), COCO17_NAMES.index("nose")


def _dot_image(height, width, dots):
    """Black image with one single-pixel dot per channel: dots = [(x, y)] for channels R, G, B."""
    array = np.zeros((height, width, 3), np.uint8)
    for channel, (x, y) in enumerate(dots):
        array[y, x, channel] = 255
    return Image.fromarray(array)


def _keypoints(points: dict[int, tuple[float, float]]) -> np.ndarray:
    kp = np.full((17, 3), -1.0, np.float32)
    kp[:, 2] = 0
    for index, (x, y) in points.items():
        kp[index] = (x, y, 1)
    return kp


def _centroid(channel: torch.Tensor) -> tuple[float, float]:
    """Intensity-weighted centre (x, y) of one (H, W) channel: an independent reference for where a dot went."""
    weights = channel.clamp(min=0).double()
    ys, xs = torch.meshgrid(torch.arange(channel.shape[0]), torch.arange(channel.shape[1]), indexing="ij")
    total = weights.sum()
    return float((weights * xs).sum() / total), float((weights * ys).sum() / total)


def test_flip_mirrors_pixels_and_swaps_left_right():
    h, w = 32, 20
    left, right = (4, 10), (14, 11)
    image = _dot_image(h, w, [left, right, (7, 3)])  # R at the left shoulder, G at the right, B at the nose
    kp = _keypoints({L_SHOULDER: left, R_SHOULDER: right, NOSE: (7, 3)})
    tensor, out = Compose([ToFloat(), RandomHorizontalFlip(p=1.0)])(image, kp)
    # the flipped sample's left shoulder is the mirrored original right shoulder
    assert tuple(out[L_SHOULDER].tolist()) == (w - 1 - right[0], right[1], 1.0)
    assert tuple(out[R_SHOULDER].tolist()) == (w - 1 - left[0], left[1], 1.0)
    assert tuple(out[NOSE].tolist()) == (w - 1 - 7, 3, 1.0)
    # and the dots moved exactly there: G (the original right shoulder) now sits at the new left shoulder
    x, y = int(out[L_SHOULDER, 0]), int(out[L_SHOULDER, 1])
    assert tensor[1, y, x] == 1.0 and tensor[1].sum() == 1.0
    x, y = int(out[R_SHOULDER, 0]), int(out[R_SHOULDER, 1])
    assert tensor[0, y, x] == 1.0
    assert (out[out[:, 2] == 0] == torch.tensor([-1.0, -1.0, 0.0])).all(), "missing points must stay missing"


def test_flip_probability_zero_and_seeded_randomness():
    image = _dot_image(16, 8, [(1, 1)])
    kp = _keypoints({L_WRIST: (1, 1)})
    _, same = Compose([ToFloat(), RandomHorizontalFlip(p=0.0)])(image, kp)
    assert torch.equal(same, torch.from_numpy(kp))
    flips = []
    for seed in (0, 0, 1, 2, 3, 4, 5, 6):
        torch.manual_seed(seed)
        flips.append(bool(Compose([ToFloat(), RandomHorizontalFlip(0.5)])(image, kp)[1][L_WRIST, 2] == 0))
    assert flips[0] == flips[1], "same torch seed, same flip"
    assert any(flips) and not all(flips)
    torch.manual_seed(0)
    a = build_transforms(32, 16, train=True)(image, kp)
    torch.manual_seed(0)
    b = build_transforms(32, 16, train=True)(image, kp)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("src,dst", [((32, 16), (64, 32)), ((64, 32), (32, 16)), ((48, 24), (40, 20))])
def test_resize_keeps_keypoints_on_the_same_pixels(src, dst):
    (h, w), (H, W) = src, dst
    dots = [(5, 9), (w - 6, h - 10), (w // 2, h // 2)]
    kp = _keypoints({L_SHOULDER: dots[0], R_SHOULDER: dots[1], NOSE: dots[2]})
    # a 2x2 block per dot (so that downsampling keeps some mass) centred at +0.5
    array = np.zeros((h, w, 3), np.uint8)
    for channel, (x, y) in enumerate(dots):
        array[y:y + 2, x:x + 2, channel] = 255
    kp[[L_SHOULDER, R_SHOULDER, NOSE], :2] += 0.5
    tensor, out = Compose([ToFloat(), Resize(H, W)])(Image.fromarray(array), kp)
    assert tensor.shape == (3, H, W)
    for channel, index in enumerate((L_SHOULDER, R_SHOULDER, NOSE)):
        cx, cy = _centroid(tensor[channel])
        assert abs(cx - float(out[index, 0])) < 0.3 and abs(cy - float(out[index, 1])) < 0.3, (channel, cx, cy, out[index])


def test_pad_crop_shifts_keypoints_and_drops_points_pushed_out():
    h, w, pad = 40, 20, 6
    dots = [(0, 20), (10, 0), (19, 39)]  # on the borders: some crops push them out
    kp = _keypoints({L_SHOULDER: dots[0], R_SHOULDER: dots[1], NOSE: dots[2]})
    image = _dot_image(h, w, dots)
    seen_missing = seen_kept = 0
    for seed in range(40):
        torch.manual_seed(seed)
        tensor, out = Compose([ToFloat(), PadRandomCrop(pad)])(image, kp)
        assert tensor.shape == (3, h, w)
        for channel, index in enumerate((L_SHOULDER, R_SHOULDER, NOSE)):
            mass = float(tensor[channel].sum())
            if out[index, 2] > 0:
                x, y = int(out[index, 0]), int(out[index, 1])
                assert tensor[channel, y, x] == 1.0, "kept keypoint must sit on its dot"
                seen_kept += 1
            else:
                assert tuple(out[index].tolist()) == (-1.0, -1.0, 0.0)
                assert mass == 0.0, "a point marked missing must really have left the crop"
                seen_missing += 1
    assert seen_missing > 0 and seen_kept > 0


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_train_pipeline_keeps_keypoints_on_their_pixels(flip_prob):
    h, w = 64, 32
    dots = [(6, 20), (25, 30), (16, 50)]
    kp = _keypoints({L_SHOULDER: dots[0], R_SHOULDER: dots[1], NOSE: dots[2]})
    array = np.zeros((h, w, 3), np.uint8)
    for channel, (x, y) in enumerate(dots):
        array[y:y + 2, x:x + 2, channel] = 255
    kp[[L_SHOULDER, R_SHOULDER, NOSE], :2] += 0.5
    transform = build_transforms(128, 64, train=True, flip_prob=flip_prob, pad=4, erasing_prob=0.0,
                                 mean=(0, 0, 0), std=(1, 1, 1))
    # channel drawn at each keypoint; after a flip the right shoulder's dot marks the (new) left shoulder
    owners = {L_SHOULDER: 0, R_SHOULDER: 1, NOSE: 2} if flip_prob == 0 else {R_SHOULDER: 0, L_SHOULDER: 1, NOSE: 2}
    checked = 0
    for seed in range(8):
        torch.manual_seed(seed)
        tensor, out = transform(Image.fromarray(array), kp)
        assert tensor.shape == (3, 128, 64) and out.shape == (17, 3)
        for index, channel in owners.items():
            if out[index, 2] > 0 and tensor[channel].sum() > 1.0:
                cx, cy = _centroid(tensor[channel])
                assert abs(cx - float(out[index, 0])) < 0.35 and abs(cy - float(out[index, 1])) < 0.35
                checked += 1
    assert checked >= 16


def test_eval_pipeline_normalises_with_imagenet_statistics():
    image = Image.fromarray(np.full((128, 64, 3), 255, np.uint8))
    tensor, kp = build_transforms(128, 64, train=False)(image, None)
    assert kp is None
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(tensor[:, 0, 0], expected)


def test_dataset_batch_contract(synthetic_split):
    split = synthetic_split
    dataset = ReIDDataset(split.train, build_transforms(64, 32, train=True), split.attribute_spec)
    batch = next(iter(DataLoader(dataset, batch_size=6, shuffle=False)))
    assert batch["image"].shape == (6, 3, 64, 32) and batch["image"].dtype == torch.float32
    for key in ("pid", "camid", "index"):
        assert batch[key].shape == (6,) and batch[key].dtype == torch.int64
    assert batch["attributes"].shape == (6, 27) and batch["attributes"].dtype == torch.int64
    assert batch["keypoints"].shape == (6, 17, 3) and batch["keypoints"].dtype == torch.float32
    assert torch.equal(batch["index"], torch.arange(6))
    assert batch["pid"].tolist() == [r.pid for r in split.train[:6]]
    kp = batch["keypoints"]
    visible = kp[..., 2] > 0
    assert visible.any()
    assert ((kp[..., 0][visible] >= -0.5) & (kp[..., 0][visible] < 31.5)).all()
    assert (kp[~visible] == torch.tensor([-1.0, -1.0, 0.0])).all()


def test_dataset_without_attributes_or_keypoints_and_preload(synthetic_split):
    bare = [ImageRecord(r.path, r.pid, r.camid) for r in synthetic_split.train[:4]]
    batch = next(iter(DataLoader(ReIDDataset(bare, build_transforms(64, 32, train=False)), batch_size=4)))
    assert batch["attributes"].shape == (4, 0)
    assert (batch["keypoints"][..., 2] == 0).all() and (batch["keypoints"][..., :2] == -1).all()
    # unknown attributes in a labelled set read as -1
    spec = AttributeSpec(("a", "b"), (2, 2))
    mixed = [ImageRecord(bare[0].path, 0, 0, np.array([1, 0])), bare[1]]
    sample = ReIDDataset(mixed, None, spec)[1]
    assert sample["attributes"].tolist() == [-1, -1]
    with pytest.raises(ValueError, match=bare[0].path):
        ReIDDataset([ImageRecord(bare[0].path, 0, 0, np.array([1, 0, 1]))], None, spec)
    # a preloaded cache gives the same samples
    transform = build_transforms(64, 32, train=False)
    plain, cached = ReIDDataset(synthetic_split.train[:5], transform), ReIDDataset(synthetic_split.train[:5], transform, preload=True, progress=False)
    assert cached.cache.shape == (5, 3, 128, 64) and cached.cache.dtype == torch.uint8
    cached.to("cpu")
    for i in range(5):
        a, b = plain[i], cached[i]
        torch.testing.assert_close(a["image"], b["image"])
        assert torch.equal(a["keypoints"], b["keypoints"])


def _pids_with_sizes(sizes: dict[int, int]) -> list[int]:
    pids = [pid for pid, n in sizes.items() for _ in range(n)]
    return list(np.random.default_rng(0).permutation(pids))


def test_pk_sampler_batches_have_p_ids_with_k_images_each():
    sizes = {pid: n for pid, n in zip(range(20), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2)}
    pids = _pids_with_sizes(sizes)
    sampler = PKSampler(pids, p=4, k=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 16 and all(0 <= i < len(pids) for i in batch)
        counts = Counter(int(pids[i]) for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}
        for pid in counts:  # an id with fewer than K images repeats its images, an id with more does not
            indices = [i for i in batch if pids[i] == pid]
            assert len(set(indices)) == min(4, sizes[pid])
    used = {int(pids[i]) for b in batches for i in b}
    assert {0, 10} & used, "ids with a single image are sampled too"
    covered = {i for b in batches for i in b}
    assert len(covered) > 0.8 * len(pids), "an epoch should see most images"


def test_pk_sampler_epochs_and_determinism():
    pids = _pids_with_sizes({pid: 6 for pid in range(12)})
    a, b = PKSampler(pids, 3, 2, seed=1), PKSampler(pids, 3, 2, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(PKSampler(pids, 3, 2, seed=2)) != first


def test_pk_sampler_ranks_get_disjoint_identities():
    pids = _pids_with_sizes({pid: 4 + pid % 3 for pid in range(30)})
    for epoch in (0, 3):
        ranks = [PKSampler(pids, 2, 4, seed=0, rank=r, world_size=3) for r in range(3)]
        ids_per_rank = []
        for sampler in ranks:
            sampler.set_epoch(epoch)
            ids_per_rank.append({int(pids[i]) for b in sampler for i in b})
        assert len({len(s) for s in ranks}) == 1, "every rank must yield the same number of batches"
        for r in range(3):
            for other in range(r + 1, 3):
                assert not ids_per_rank[r] & ids_per_rank[other]


def test_pk_sampler_errors_and_dataloader():
    with pytest.raises(ValueError, match="identities"):
        PKSampler([0, 0, 1, 1], p=3, k=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler([0, 1, 2], p=1, k=2, rank=2, world_size=2)
    pids = list(range(10)) * 3
    sampler = PKSampler(pids, 5, 3, drop_last=False)
    loader = DataLoader(torch.arange(len(pids)), batch_sampler=sampler)
    batches = [b.tolist() for b in loader]
    assert batches == list(sampler)


def test_out_of_image_and_nan_keypoints_become_missing_and_are_counted(caplog):
    from reidlab.data.transforms import Normalize

    pipeline = Compose([ToFloat(), Resize(64, 32), Normalize()])
    kp = _keypoints({NOSE: (10.0, 5000.0), L_SHOULDER: (float("nan"), 20.0), R_SHOULDER: (20.0, 30.0)})
    with caplog.at_level("WARNING", logger="reidlab.data.transforms"):
        _, out = pipeline(_dot_image(128, 64, [(0, 0)] * 3), kp)
    assert out[NOSE].tolist() == [-1.0, -1.0, 0.0] and out[L_SHOULDER].tolist() == [-1.0, -1.0, 0.0]
    assert out[R_SHOULDER, 2] == 1 and not torch.isnan(out).any()
    assert pipeline.dropped_keypoints == 2 and "2 keypoint(s)" in caplog.text
    pipeline(_dot_image(128, 64, [(0, 0)] * 3), kp)
    assert pipeline.dropped_keypoints == 4  # counted on every call


def test_random_erasing_hides_the_keypoints_it_covers():
    from reidlab.data.transforms import RandomErasing

    torch.manual_seed(0)
    hidden_any = False
    for _ in range(20):
        image = torch.ones(3, 64, 32)
        kp = torch.as_tensor(_keypoints({i: (float(i), float(3 * i)) for i in range(17)}))  # a diagonal of points
        erased, out = RandomErasing(p=1.0, scale=(0.1, 0.3))(image, kp.clone())
        zero = (erased == 0).all(dim=0)  # (H, W) the erased box
        for i in range(17):
            x, y = int(kp[i, 0]), int(kp[i, 1])
            assert (out[i, 2] == 0) == bool(zero[y, x]), (i, x, y)  # hidden exactly where erased
        hidden_any |= bool((out[:, 2] == 0).any())
    assert hidden_any
    image = torch.ones(3, 64, 32)
    torch.manual_seed(0)
    _, kept = RandomErasing(p=1.0, scale=(0.3, 0.3), hide_keypoints=False)(image, kp.clone())
    assert torch.equal(kept, kp)
