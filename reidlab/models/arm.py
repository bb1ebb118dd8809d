"""Attribute relation mining module, ARM (MSRA Sec. 2.2, Eq. 1-2).

    M_k     = sigmoid(W1 F_a + b)                                    (Eq. 1)
    F_a^(k) = 1/(h w) sum_xy F_a(x, y) * M_k(x, y)                   (mask-weighted pooling)
    l^k     = FC_k(F_a^(k));  attribute logits = classifier_k(l^k)   (K cross-entropy losses)
    S_a(l^k, l^i) = phi(l^k)^T phi'(l^i)
    A       = ReLU(D^-1/2 S_a D^-1/2 z~ W2),  z~ = {l^k}             (Eq. 2)
    F'_a    = FC(A)

Choices (the paper leaves them open):
- the printed S_a can be negative, which D^-1/2 cannot take: we use
  ``softplus(phi(l^k)^T phi'(l^i) / sqrt(d))``, strictly positive (so every d_k > 0),
  smooth, and order-preserving; D is the diagonal of its row sums, as the paper says.
- l^k (the graph node) is a per-attribute FC embedding of F_a^(k) and the attribute
  classifier reads l^k, so the nodes are the "predicted attribute nodes" that the
  attribute losses constrain, and all nodes share one width (the class counts differ).
- F'_a = FC over the flattened K x d node matrix, so it keeps which attribute said what.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def normalized_adjacency(relation: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``D^-1/2 S D^-1/2`` with ``D = diag(row sums of S)`` for ``S`` of shape ``(B, K, K)``, S >= 0."""
    degree = relation.sum(dim=-1).clamp_min(eps)  # (B, K)
    inv_sqrt = degree.rsqrt()  # (B, K)
    return inv_sqrt[:, :, None] * relation * inv_sqrt[:, None, :]  # (B, K, K)


@dataclass
class ARMOutput:
    masks: torch.Tensor  # (B, K, h, w) attribute masks M_k (Eq. 1)
    attribute_logits: list[torch.Tensor]  # K tensors (B, C_k)
    nodes: torch.Tensor  # (B, K, d) graph nodes l^k
    relation: torch.Tensor  # (B, K, K) non-negative S_a
    adjacency: torch.Tensor  # (B, K, K) D^-1/2 S_a D^-1/2
    features: torch.Tensor  # (B, out_dim) F'_a


class AttributeRelationMining(nn.Module):
    """ARM, MSRA Sec. 2.2 Eq. 1-2: attribute masks, per-attribute classifiers, and an attribute GCN.

    ``num_classes`` is one class count per attribute (2 = binary; Market's age has 4).
    """

    def __init__(self, in_channels: int, num_classes: tuple[int, ...] | list[int], node_dim: int = 256,
                 embed_dim: int = 128, out_dim: int = 512):
        super().__init__()
        if len(num_classes) == 0:
            raise ValueError("AttributeRelationMining: num_classes is empty (the dataset has no attributes)")
        if any(int(c) < 2 for c in num_classes):
            raise ValueError(f"AttributeRelationMining: every attribute needs >= 2 classes, got {list(num_classes)}")
        self.num_classes = tuple(int(c) for c in num_classes)
        num_attributes = len(self.num_classes)
        self.mask_conv = nn.Conv2d(in_channels, num_attributes, kernel_size=1)  # W1, b (Eq. 1)
        self.node_fc = nn.ModuleList(  # FC_k: F_a^(k) -> l^k
            nn.Sequential(nn.Linear(in_channels, node_dim), nn.BatchNorm1d(node_dim), nn.ReLU(inplace=True))
            for _ in self.num_classes
        )
        self.classifiers = nn.ModuleList(nn.Linear(node_dim, c) for c in self.num_classes)
        self.phi = nn.Linear(node_dim, embed_dim)  # phi
        self.phi_prime = nn.Linear(node_dim, embed_dim)  # phi'
        self.gcn_weight = nn.Linear(node_dim, node_dim, bias=False)  # W2 (Eq. 2)
        self.out_fc = nn.Linear(num_attributes * node_dim, out_dim)  # F'_a = FC(A)
        self.out_dim = out_dim

    def relation(self, nodes: torch.Tensor) -> torch.Tensor:
        """Non-negative S_a: softplus of the scaled embedded dot product, ``(B, K, K)``."""
        scores = self.phi(nodes) @ self.phi_prime(nodes).transpose(1, 2)  # (B, K, K)
        return F.softplus(scores / math.sqrt(self.phi.out_features))  # (B, K, K)

    def forward(self, attribute_map: torch.Tensor) -> ARMOutput:
        masks = torch.sigmoid(self.mask_conv(attribute_map))  # (B, K, h, w)  Eq. 1
        h, w = attribute_map.shape[-2:]
        pooled = torch.einsum("bchw,bkhw->bkc", attribute_map, masks) / (h * w)  # (B, K, C)
        nodes = torch.stack([fc(pooled[:, k]) for k, fc in enumerate(self.node_fc)], dim=1)  # (B, K, d)
        attribute_logits = [clf(nodes[:, k]) for k, clf in enumerate(self.classifiers)]  # K x (B, C_k)
        relation = self.relation(nodes)  # (B, K, K)
        adjacency = normalized_adjacency(relation)  # (B, K, K)
        graph = F.relu(self.gcn_weight(adjacency @ nodes))  # (B, K, d)  Eq. 2
        features = self.out_fc(graph.flatten(1))  # (B, out_dim)
        return ARMOutput(masks, attribute_logits, nodes, relation, adjacency, features)
