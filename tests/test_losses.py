"""Losses against plain references written here (per-anchor loops for the triplet loss)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reidlab.losses import LossTerm, attribute_loss, compute_loss, cross_entropy_loss, triplet_loss


def pk_batch(p=4, k=3, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pids = torch.arange(p).repeat_interleave(k)
    features = torch.randn(p * k, dim, generator=generator)
    return features, pids


def triplet_reference(features, pids, margin, soft_margin=False):
    """Batch hard, one anchor at a time: hardest positive, hardest negative."""
    losses = []
    for a in range(len(pids)):
        positives = [torch.dist(features[a], features[p]) for p in range(len(pids)) if p != a and pids[p] == pids[a]]
        negatives = [torch.dist(features[a], features[n]) for n in range(len(pids)) if pids[n] != pids[a]]
        if not positives or not negatives:
            continue
        gap = max(positives) - min(negatives)
        losses.append(math.log1p(math.exp(gap)) if soft_margin else max(gap + margin, 0.0))
    return sum(float(x) for x in losses) / len(losses)


@pytest.mark.parametrize("margin", [0.3, 1.2, 10.0])
@pytest.mark.parametrize("soft_margin", [False, True])
def test_triplet_matches_per_anchor_reference(margin, soft_margin):
    features, pids = pk_batch(seed=int(margin * 10))
    got = triplet_loss(features, pids, margin=margin, soft_margin=soft_margin)
    assert got.item() == pytest.approx(triplet_reference(features, pids, margin, soft_margin), rel=1e-5, abs=1e-6)


def test_triplet_skips_anchors_without_positive_and_batch_without_pairs():
    features, pids = pk_batch(p=3, k=2)
    pids = torch.tensor([0, 0, 1, 1, 2, 3])  # anchors 4 and 5 have no positive
    assert triplet_loss(features, pids, 1.2).item() == pytest.approx(triplet_reference(features, pids, 1.2), rel=1e-5)
    single = features.clone().requires_grad_(True)
    loss = triplet_loss(single, torch.arange(6), margin=1.2)  # no positives at all
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(single.grad).all()


def test_triplet_gradient_finite_at_zero_distance_and_descends():
    features, pids = pk_batch(p=2, k=2, dim=4)
    features[1] = features[0]  # a zero distance between positives
    features = features.clone().requires_grad_(True)
    loss = triplet_loss(features, pids, margin=1.2)
    loss.backward()
    assert torch.isfinite(features.grad).all()
    # Gradient sanity: a small step against the gradient lowers the loss, and the
    # analytic gradient matches finite differences in float64.
    x = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.autograd.gradcheck(lambda z: triplet_loss(z, y, margin=0.5), (x,))
    before = triplet_loss(x, y, margin=5.0)
    (grad,) = torch.autograd.grad(before, x)
    assert triplet_loss(x - 0.01 * grad, y, margin=5.0) < before


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_triplet_low_precision_inputs_use_float32_distances(dtype):
    features, pids = pk_batch(dim=16)
    low = features.to(dtype)
    got = triplet_loss(low, pids, margin=1.2)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(triplet_reference(low.float(), pids, 1.2), rel=1e-5)
    from reidlab.losses import euclidean_distance_matrix

    assert euclidean_distance_matrix(low).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision: still float32 inside
        dist = euclidean_distance_matrix(features)
        assert dist.dtype == torch.float32
        assert triplet_loss(features, pids, margin=1.2).dtype == torch.float32
    torch.testing.assert_close(dist, torch.cdist(features, features), atol=5e-3, rtol=1e-4)  # diagonal: cancellation


def test_cross_entropy_eq9_and_label_smoothing():
    generator = torch.Generator().manual_seed(1)
    logits, pids = torch.randn(6, 5, generator=generator), torch.tensor([0, 1, 2, 3, 4, 0])
    plain = -torch.stack([torch.log_softmax(logits[i], 0)[pids[i]] for i in range(6)]).mean()
    assert cross_entropy_loss(logits, pids).item() == pytest.approx(plain.item(), rel=1e-6)
    eps = 0.1
    target = torch.full((6, 5), eps / 5)
    target[torch.arange(6), pids] += 1 - eps
    smoothed = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    assert cross_entropy_loss(logits, pids, label_smoothing=eps).item() == pytest.approx(smoothed.item(), rel=1e-6)
    assert cross_entropy_loss(logits.half(), pids).dtype == torch.float32
    with pytest.raises(ValueError, match="pids"):
        cross_entropy_loss(logits, pids[:3])


def test_attribute_loss_masks_unknown_and_mixes_kinds():
    generator = torch.Generator().manual_seed(2)
    single = torch.randn(5, 1, generator=generator)  # binary, one logit (BCE)
    pair = torch.randn(5, 2, generator=generator)  # binary, two-way CE
    age = torch.randn(5, 4, generator=generator)  # Market's 4-class age
    targets = torch.tensor([[1, 0, 3], [0, -1, 2], [-1, 1, -1], [1, 1, 0], [0, -1, 1]])
    terms = []
    for k, logits in enumerate([single, pair, age]):
        rows = [i for i in range(5) if targets[i, k] >= 0]
        values = []
        for i in rows:
            if logits.shape[1] == 1:
                p = torch.sigmoid(logits[i, 0])
                values.append(-(torch.log(p) if targets[i, k] == 1 else torch.log(1 - p)))
            else:
                values.append(-torch.log_softmax(logits[i], 0)[targets[i, k]])
        terms.append(torch.stack(values).mean())
    expected = torch.stack(terms).mean()
    got = attribute_loss([single, pair, age], targets, num_classes=[2, 2, 4])
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_attribute_loss_all_unknown_is_zero_with_gradient():
    logits = [torch.randn(3, 1, requires_grad=True), torch.randn(3, 4, requires_grad=True)]
    loss = attribute_loss(logits, torch.full((3, 2), -1))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert all(torch.equal(x.grad, torch.zeros_like(x)) for x in logits)
    with pytest.raises(ValueError, match="attribute 1"):
        attribute_loss(logits, torch.tensor([[0, 4], [1, 0], [0, 0]]))  # class 4 of a 4-class attribute
    with pytest.raises(ValueError, match="logits"):
        attribute_loss(logits[:1], torch.zeros(3, 2, dtype=torch.long))


def test_compute_loss_weights_means_and_parts():
    features, pids = pk_batch(p=3, k=2, dim=6)
    generator = torch.Generator().manual_seed(3)
    logits = [torch.randn(6, 3, generator=generator, requires_grad=True) for _ in range(2)]
    triplet = [features.clone().requires_grad_(True)]
    attributes = [torch.randn(6, 1, generator=generator), torch.randn(6, 3, generator=generator)]
    batch = {"pid": pids, "attributes": torch.tensor([[1, 2]] * 3 + [[0, -1]] * 3)}
    terms = (
        LossTerm("id", "logits", weight=1.0, options={"label_smoothing": 0.1}),
        LossTerm("triplet", "triplet", weight=2.0, options={"margin": 1.2}, name="tri"),
        LossTerm("attribute", "attribute_logits", weight=0.3),
    )
    outputs = {"logits": logits, "triplet": triplet, "attribute_logits": attributes}
    total, parts = compute_loss(outputs, batch, terms)
    id_part = (cross_entropy_loss(logits[0], pids, 0.1) + cross_entropy_loss(logits[1], pids, 0.1)) / 2
    tri_part = 2.0 * triplet_loss(features, pids, margin=1.2)
    attr_part = 0.3 * attribute_loss(attributes, batch["attributes"])
    assert set(parts) == {"id", "tri", "attribute"}
    assert parts["id"].item() == pytest.approx(id_part.item(), rel=1e-6)
    assert parts["tri"].item() == pytest.approx(tri_part.item(), rel=1e-6)
    assert parts["attribute"].item() == pytest.approx(attr_part.item(), rel=1e-6)
    assert total.item() == pytest.approx((id_part + tri_part + attr_part).item(), rel=1e-6)
    assert not parts["id"].requires_grad
    total.backward()
    assert logits[0].grad is not None and triplet[0].grad is not None


def test_compute_loss_errors_name_the_term():
    outputs = {"logits": [torch.randn(4, 3)]}
    with pytest.raises(KeyError, match="'tri'.*'triplet'"):
        compute_loss(outputs, {"pid": torch.zeros(4, dtype=torch.long)}, [LossTerm("triplet", "triplet", name="tri")])
    with pytest.raises(KeyError, match="'id'.*'pid'"):
        compute_loss(outputs, {}, [LossTerm("id", "logits")])
    with pytest.raises(ValueError, match="unknown kind"):
        compute_loss(outputs, {"pid": torch.zeros(4, dtype=torch.long)}, [LossTerm("center", "logits")])
    with pytest.raises(ValueError, match="unknown options"):
        compute_loss(outputs, {"pid": torch.zeros(4, dtype=torch.long)}, [LossTerm("id", "logits", options={"margin": 1})])
