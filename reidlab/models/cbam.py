"""CBAM spatial attention (CBAM-S; Woo et al., ECCV 2018, Sec. 3, Eq. 3), MBGN Table 2's comparison.

    M_s(F) = sigmoid(f^{7x7}([AvgPool_c(F); MaxPool_c(F)]))        (CBAM Eq. 3)
    output = M_s(F) * F
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class CBAMDetails:
    """attention: ``(B, 1, H, W)`` in (0, 1)."""

    attention: torch.Tensor


class CBAMSpatial(nn.Module):
    """CBAM-S (CBAM Eq. 3): channel-wise average and max -> 7x7 conv -> sigmoid, multiplying the feature.

    A BatchNorm follows the 7x7 conv, as in the authors' code (BasicConv with bn=True).
    Any spatial size works (padding K//2); ``channels`` is accepted for symmetry with GSRPA.
    """

    def __init__(self, channels: int | None = None, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, f: torch.Tensor, return_details: bool = False):
        pooled = torch.cat([f.mean(dim=1, keepdim=True), f.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        attention = torch.sigmoid(self.bn(self.conv(pooled)))  # (B, 1, H, W)
        out = attention * f  # (B, C, H, W)
        if return_details:
            return out, CBAMDetails(attention)
        return out
