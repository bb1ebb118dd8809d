"""Feature enhancement module, FEM (MSRA Sec. 2.4, Eq. 9, Fig. 2).

    F_fuse = sigmoid(W10 tanh(W8 F_pose + W9 F'_a + b')) * F_pose      (Eq. 9)
    F_out  = [F_fuse, F_g]

Choice: the hidden width of W8/W9 (``hidden_dim``) is not given; default = the pose width.
b' is the bias of W8 (one shared bias, as printed).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class FeatureEnhancement(nn.Module):
    """Attribute-guided gate on the pose feature, MSRA Eq. 9. ``forward`` returns (F_fuse, gate)."""

    def __init__(self, pose_dim: int, attribute_dim: int, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or pose_dim
        self.w8 = nn.Linear(pose_dim, hidden_dim)  # W8 and b'
        self.w9 = nn.Linear(attribute_dim, hidden_dim, bias=False)  # W9
        self.w10 = nn.Linear(hidden_dim, pose_dim, bias=False)  # W10

    def forward(self, pose_features: torch.Tensor, attribute_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate = torch.sigmoid(self.w10(torch.tanh(self.w8(pose_features) + self.w9(attribute_features))))  # (B, d)
        return gate * pose_features, gate  # Eq. 9
