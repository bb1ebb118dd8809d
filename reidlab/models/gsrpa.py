"""Global Spatial Relation Pixel Attention (GSRPA), MBGN Sec. 3.3, Eq. 1-7, Fig. 2.

    Conv_i(f)  = ReLU(BN(Conv(f)))                                   (Eq. 1)
    Relation   = Conv_1(inv(f)) x Conv_2(inv(f))        (B, N, N)    (Eq. 2)
    Map(X)     = ReLU(BN(Conv(X)))                                   (Eq. 3)
    Relation_1 = Map(Reshape(Relation))                              (Eq. 4)
    Relation_2 = Map(Reshape(Relation).T)                            (Eq. 5)
    Em(f)      = Gap(Conv_1x1(f))                                    (Eq. 6)
    Attention  = Conv(Concat(Em(f), Relation_1, Relation_2))         (Eq. 7)
    output     = sigmoid(Attention) * f

GSRPA grows from RGA-S (Zhang et al., CVPR 2020); where MBGN is silent its
choices are used (documented on :class:`GSRPA`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from reidlab.models.involution import InvolutionBlock


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """``ReLU(BN(Conv1x1(x)))``: MBGN Eq. 1 (conv blocks) and Eq. 3 (mapping layer)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
    )


@dataclass
class GSRPADetails:
    """What one GSRPA computed, for looking inside (``GSRPA.forward(x, return_details=True)``).

    relation: ``(B, N, N)`` Eq. 2, ``relation[b, i, j]`` = relation of pixel i to pixel j (N = H*W, row-major pixels).
    relation_1, relation_2: ``(B, N_r, H, W)`` Eq. 4/5 (after the mapping layer).
    embedding: ``(B, 1, H, W)`` Eq. 6. attention: ``(B, 1, H, W)`` sigmoid of Eq. 7, in (0, 1).
    """

    relation: torch.Tensor
    relation_1: torch.Tensor
    relation_2: torch.Tensor
    embedding: torch.Tensor
    attention: torch.Tensor


class GSRPA(nn.Module):
    """GSRPA, MBGN Eq. 1-7: spatial attention from the global pixel-to-pixel relation matrix.

    Choices where the paper is silent (following RGA-S, which GSRPA extends):
    conv blocks and embedding reduce C to C/``channel_ratio`` (8); each mapping layer
    reduces N relation channels to N/``spatial_ratio`` (8); Eq. 7's "Conv" is RGA-S's
    Conv-BN-ReLU, Conv-BN pair (hidden width /``down_ratio`` 8), and a sigmoid keeps
    the attention in (0, 1). Eq. 6's "Gap" averages over *channels* to one spatial
    map (as RGA-S), since a spatially pooled scalar could not be concatenated with
    the (N_r, H, W) relation maps. N = H*W is fixed at build time: ``spatial_size``.
    """

    def __init__(
        self,
        channels: int,
        spatial_size: tuple[int, int],
        channel_ratio: int = 8,
        spatial_ratio: int = 8,
        down_ratio: int = 8,
        kernel_size: int = 7,
        group_channels: int = 16,
    ):
        super().__init__()
        self.channels = channels
        self.spatial_size = (int(spatial_size[0]), int(spatial_size[1]))
        self.num_pixels = self.spatial_size[0] * self.spatial_size[1]  # N
        inter_channels = max(1, channels // channel_ratio)
        relation_channels = max(1, self.num_pixels // spatial_ratio)
        self.involution = InvolutionBlock(channels, kernel_size, group_channels)
        self.conv_1 = conv_bn_relu(channels, inter_channels)  # Eq. 1, i = 1
        self.conv_2 = conv_bn_relu(channels, inter_channels)  # Eq. 1, i = 2
        self.map_1 = conv_bn_relu(self.num_pixels, relation_channels)  # Eq. 3 for Eq. 4
        self.map_2 = conv_bn_relu(self.num_pixels, relation_channels)  # Eq. 3 for Eq. 5
        self.embed = conv_bn_relu(channels, inter_channels)  # Conv_1x1 of Eq. 6
        joint = 1 + 2 * relation_channels
        hidden = max(1, joint // down_ratio)
        self.attention_conv = nn.Sequential(  # Conv of Eq. 7
            nn.Conv2d(joint, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1, bias=False), nn.BatchNorm2d(1),
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, spatial_size={self.spatial_size}"

    def _check(self, f: torch.Tensor) -> None:
        if f.dim() != 4 or f.shape[1] != self.channels or tuple(f.shape[-2:]) != self.spatial_size:
            H, W = self.spatial_size
            raise ValueError(
                f"GSRPA was built for feature maps of {self.channels} channels and size {H}x{W} "
                f"(N = {self.num_pixels} pixels, fixed by the model's input_size), got {tuple(f.shape)}; "
                "build the model with the input_size you feed it"
            )

    def forward(self, f: torch.Tensor, return_details: bool = False):
        self._check(f)
        B, C, H, W = f.shape
        N = H * W
        g = self.involution(f)  # (B, C, H, W)  inv(f)
        out_1 = self.conv_1(g).flatten(2)  # (B, C', N)
        out_2 = self.conv_2(g).flatten(2)  # (B, C', N)
        relation = out_1.transpose(1, 2) @ out_2  # (B, N, N)  Eq. 2
        # Reshape: row i of the relation becomes channel i of an (N, H, W) map, i.e.
        # pixel j holds relation(i, j) for all i; the transpose holds relation(j, i).
        reshaped = relation.view(B, N, H, W)  # (B, N, H, W)
        transposed = relation.transpose(1, 2).reshape(B, N, H, W)  # (B, N, H, W)
        relation_1 = self.map_1(reshaped)  # (B, N_r, H, W)  Eq. 4
        relation_2 = self.map_2(transposed)  # (B, N_r, H, W)  Eq. 5
        embedding = self.embed(f).mean(dim=1, keepdim=True)  # (B, 1, H, W)  Eq. 6
        logits = self.attention_conv(torch.cat([embedding, relation_1, relation_2], dim=1))  # (B, 1, H, W)  Eq. 7
        attention = torch.sigmoid(logits)  # (B, 1, H, W)
        out = attention * f  # (B, C, H, W)
        if return_details:
            return out, GSRPADetails(relation, relation_1, relation_2, embedding, attention)
        return out
