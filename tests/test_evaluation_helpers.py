"""chance_level (random-ranking reference) and attribute_accuracy (vs the majority class)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from reidlab.data.records import AttributeSpec, ImageRecord, ReIDSplit
from reidlab.engine.evaluate import attribute_accuracy, chance_level
from reidlab.engine.metrics import evaluate_ranking


def _rec(pid, camid):
    return ImageRecord(path=f"{pid}_{camid}.jpg", pid=pid, camid=camid)


def test_chance_rank1_is_exact_on_a_hand_made_split():
    # query 1 (cam 0): valid = pid1/cam1, pid2, pid3, pid4 x2 (pid1/cam0 excluded, junk never counts) -> 1/5
    # query 4 (cam 0): valid = the 6 non-junk images; positives: pid4/cam1 x2 -> 2/6
    query = [_rec(1, 0), _rec(4, 0), _rec(9, 0)]  # pid 9 has no match: left out
    gallery = [_rec(1, 0), _rec(1, 1), _rec(2, 1), _rec(3, 0), _rec(-1, 1), _rec(4, 1), _rec(4, 1)]
    split = ReIDSplit("hand", [], query, gallery)
    chance = chance_level(split, draws=3)
    assert chance["rank1"] == pytest.approx(np.mean([1 / 5, 2 / 6]))
    assert 0 < chance["mAP"] <= 1


def test_chance_rank1_matches_random_rankings():
    rng = np.random.default_rng(1)
    query = [_rec(int(p), int(c)) for p, c in zip(rng.integers(0, 6, 40), rng.integers(0, 3, 40))]
    gallery = [_rec(int(p), int(c)) for p, c in zip(rng.integers(-1, 6, 120), rng.integers(0, 3, 120))]
    split = ReIDSplit("random", [], query, gallery)
    arrays = [np.array([getattr(r, f) for r in rs]) for rs, f in ((query, "pid"), (gallery, "pid"), (query, "camid"), (gallery, "camid"))]
    simulated = np.mean([evaluate_ranking(rng.random((40, 120)), *arrays)["rank1"] for _ in range(400)])
    assert chance_level(split, draws=2)["rank1"] == pytest.approx(simulated, abs=0.02)


class _ConstantAttributeModel(torch.nn.Module):
    """Predicts class 0 for every attribute: its accuracy is the share of 0 labels."""

    def __init__(self, num_attributes):
        super().__init__()
        self.num_attributes = num_attributes
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def explain(self, images, keypoints):
        return SimpleNamespace(attribute_predictions=torch.zeros(images.shape[0], self.num_attributes, dtype=torch.long))


def test_attribute_accuracy_against_direct_counts(synthetic_split):
    spec = synthetic_split.attribute_spec
    test_records = [r for r in synthetic_split.query + synthetic_split.gallery if r.attributes is not None][:24]
    table = attribute_accuracy(_ConstantAttributeModel(len(spec)), test_records, spec, synthetic_split.train,
                               height=64, width=32, progress=False, device="cpu")
    targets = np.stack([r.attributes for r in test_records])
    train = np.stack([r.attributes for r in synthetic_split.train if r.attributes is not None])
    for k, name in enumerate(spec.names):
        known = targets[:, k] >= 0
        assert table.loc[name, "accuracy"] == pytest.approx((targets[known, k] == 0).mean())
        majority = np.bincount(train[:, k][train[:, k] >= 0]).argmax()
        assert table.loc[name, "majority_accuracy"] == pytest.approx((targets[known, k] == majority).mean())
        assert table.loc[name, "known"] == known.sum()


def test_attribute_accuracy_needs_explain(synthetic_split):
    with pytest.raises(TypeError, match="explain"):
        attribute_accuracy(torch.nn.Linear(2, 2), synthetic_split.query, synthetic_split.attribute_spec,
                           synthetic_split.train, 64, 32)
