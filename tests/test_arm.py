"""ARM (MSRA Sec. 2.2, Eq. 1-2): shapes, gradients, and the normalised adjacency against a direct computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.models.arm import AttributeRelationMining, normalized_adjacency
from reidlab.models.fem import FeatureEnhancement

NUM_CLASSES = (4, 2, 2, 2, 2)  # one 4-class attribute (like Market's age) and four binary ones


@pytest.fixture
def arm():
    torch.manual_seed(0)
    return AttributeRelationMining(in_channels=16, num_classes=NUM_CLASSES, node_dim=8, embed_dim=6, out_dim=12)


def test_shapes_and_gradients(arm):
    attribute_map = torch.randn(3, 16, 8, 4, requires_grad=True)
    out = arm(attribute_map)
    assert out.masks.shape == (3, 5, 8, 4)
    assert float(out.masks.detach().min()) >= 0 and float(out.masks.detach().max()) <= 1
    assert [tuple(t.shape) for t in out.attribute_logits] == [(3, c) for c in NUM_CLASSES]
    assert out.nodes.shape == (3, 5, 8)
    assert out.adjacency.shape == (3, 5, 5)
    assert out.features.shape == (3, 12)
    (out.features.square().sum() + sum(t.sum() for t in out.attribute_logits)).backward()
    assert attribute_map.grad is not None and torch.isfinite(attribute_map.grad).all()
    for name, param in arm.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_mask_weighted_pooling_matches_definition(arm):
    """F_a^(k) = 1/(hw) sum F_a * M_k, then l^k = FC_k(F_a^(k)): recompute by a plain loop."""
    arm.eval()
    attribute_map = torch.randn(2, 16, 4, 3)
    out = arm(attribute_map)
    masks = torch.sigmoid(arm.mask_conv(attribute_map))
    for k in range(len(NUM_CLASSES)):
        pooled = (attribute_map * masks[:, k : k + 1]).mean(dim=(2, 3))  # (B, C)
        torch.testing.assert_close(out.nodes[:, k], arm.node_fc[k](pooled), rtol=1e-5, atol=1e-5)


def test_adjacency_is_symmetric_normalised_as_eq2(arm):
    arm.eval()
    out = arm(torch.randn(2, 16, 8, 4))
    for b in range(2):
        nodes = out.nodes[b].detach().numpy().astype(np.float64)
        phi = nodes @ arm.phi.weight.detach().numpy().T + arm.phi.bias.detach().numpy()
        phi_p = nodes @ arm.phi_prime.weight.detach().numpy().T + arm.phi_prime.bias.detach().numpy()
        scores = phi @ phi_p.T / np.sqrt(phi.shape[1])
        relation = np.log1p(np.exp(scores))  # softplus: the documented non-negative S_a
        degree = np.diag(relation.sum(axis=1))  # D: row sums of S_a
        d_inv_sqrt = np.linalg.inv(np.sqrt(degree))
        expected = d_inv_sqrt @ relation @ d_inv_sqrt
        np.testing.assert_allclose(out.relation[b].detach().numpy(), relation, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(out.adjacency[b].detach().numpy(), expected, rtol=1e-4, atol=1e-6)
        # Eq. 2: A = ReLU(adjacency @ z W2); F'_a = FC(A)
        graph = np.maximum(expected @ nodes @ arm.gcn_weight.weight.detach().numpy().T.astype(np.float64), 0)
        features = graph.reshape(-1) @ arm.out_fc.weight.detach().numpy().T + arm.out_fc.bias.detach().numpy()
        np.testing.assert_allclose(out.features[b].detach().numpy(), features, rtol=1e-4, atol=1e-5)


def test_normalized_adjacency_of_a_symmetric_matrix_is_symmetric_with_top_eigenvalue_one():
    torch.manual_seed(1)
    base = torch.rand(1, 6, 6)
    relation = base + base.transpose(1, 2)
    adjacency = normalized_adjacency(relation)
    torch.testing.assert_close(adjacency, adjacency.transpose(1, 2))
    eigenvalues = torch.linalg.eigvalsh(adjacency[0].double())
    assert abs(float(eigenvalues.max()) - 1.0) < 1e-6  # D^-1/2 S D^-1/2 has spectral radius 1 for S > 0


def test_relation_is_non_negative_even_for_opposed_embeddings(arm):
    nodes = torch.randn(2, 5, 8) * 50  # large scores of both signs
    relation = arm.relation(nodes)
    assert (relation >= 0).all() and torch.isfinite(normalized_adjacency(relation)).all()


def test_bad_class_counts_are_rejected():
    with pytest.raises(ValueError, match="num_classes is empty"):
        AttributeRelationMining(8, ())
    with pytest.raises(ValueError, match=">= 2 classes"):
        AttributeRelationMining(8, (2, 1))


def test_feature_enhancement_is_eq9():
    torch.manual_seed(0)
    fem = FeatureEnhancement(pose_dim=6, attribute_dim=5, hidden_dim=4)
    pose, attr = torch.randn(3, 6), torch.randn(3, 5)
    fused, gate = fem(pose, attr)
    hidden = torch.tanh(pose @ fem.w8.weight.T + fem.w8.bias + attr @ fem.w9.weight.T)
    expected_gate = torch.sigmoid(hidden @ fem.w10.weight.T)
    torch.testing.assert_close(gate, expected_gate)
    torch.testing.assert_close(fused, expected_gate * pose)
    assert F.relu(gate - 1).sum() == 0 and (gate >= 0).all()
