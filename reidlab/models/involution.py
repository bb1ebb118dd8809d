"""Involution (Li et al., "Involution: Inverting the Inheritance of Convolution", CVPR 2021), as used by MBGN Sec. 3.3.

A kernel is generated for every pixel from the feature at that pixel (spatial
specific), shared by the ``group_channels`` channels of a group (channel agnostic):

    H_{i,j} = phi(X_{i,j}) = W_1 ReLU(BN(W_0 X_{i,j}))              (Li et al. Eq. 6)
    Y_{i,j,k} = sum_{(u,v) in K x K} H_{i,j,u+K//2,v+K//2,ceil(kG/C)} X_{i+u,j+v,k}   (Li et al. Eq. 4)

MBGN: "each involution layer is designed in 7x7 kernel size and 16 group channels".
Stride is always 1 and padding ``K // 2``, so any (even or odd) H, W keeps its size.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Involution(nn.Module):
    """One involution layer (Li et al. 2021 Eq. 4 and 6): per-pixel kernels applied as shifted multiply-adds.

    ``channels`` must be divisible by ``group_channels`` (16 in MBGN); the kernel
    generator reduces channels by ``reduction`` (4, as in Li et al.'s code) before
    spanning to ``K*K*G`` kernel values per pixel.
    """

    def __init__(self, channels: int, kernel_size: int = 7, group_channels: int = 16, reduction: int = 4):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"Involution: kernel_size must be odd, got {kernel_size}")
        if channels % group_channels != 0:
            raise ValueError(
                f"Involution: channels ({channels}) must be divisible by group_channels ({group_channels})"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.groups = channels // group_channels
        hidden = max(1, channels // reduction)
        # kernel generation function phi (Li et al. Eq. 6)
        self.reduce = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The per-pixel kernels ``(B, G, K*K, H, W)`` generated from ``x``."""
        B, _, H, W = x.shape
        kernel = self.span(self.reduce(x))  # (B, G*K*K, H, W)
        return kernel.view(B, self.groups, self.kernel_size**2, H, W)  # (B, G, K*K, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if C != self.channels:
            raise ValueError(f"Involution: built for {self.channels} channels, got input with {C}")
        K, G, pad = self.kernel_size, self.groups, self.kernel_size // 2
        kernel = self.kernels(x)  # (B, G, K*K, H, W)
        padded = F.pad(x, (pad, pad, pad, pad)).view(B, G, C // G, H + 2 * pad, W + 2 * pad)  # (B, G, C/G, H+2p, W+2p)
        # Li et al. Eq. 4 as K*K shifted multiply-adds rather than F.unfold: the same sum
        # (offsets in unfold's row-major order), without the K*K-fold copy of the input
        # that unfold materialises (x49 memory at K=7), and about 5x faster on CPU.
        out = x.new_zeros(B, G, C // G, H, W)  # (B, G, C/G, H, W)
        for u in range(K):
            for v in range(K):
                shifted = padded[..., u:u + H, v:v + W]  # (B, G, C/G, H, W) pixel (i+u-p, j+v-p)
                out = out.addcmul(shifted, kernel[:, :, u * K + v].unsqueeze(2))  # (B, G, C/G, H, W)
        return out.view(B, C, H, W)  # (B, C, H, W)


class InvolutionBlock(nn.Module):
    """MBGN's Involution Block (Sec. 3.3, Fig. 2): two involution layers, each followed by BN.

    The paper names no activation between the two layers, so none is used.
    """

    def __init__(self, channels: int, kernel_size: int = 7, group_channels: int = 16):
        super().__init__()
        self.inv1 = Involution(channels, kernel_size, group_channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.inv2 = Involution(channels, kernel_size, group_channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.inv2(self.bn1(self.inv1(x))))  # (B, C, H, W)
