"""Global Spatial Relation Pixel Attention (GSRPA), MBGN Sec. 3.3, Eq. 1-7, Fig. 2.

    Conv_i(f)  = ReLU(BN(Conv(f)))                                   (Eq. 1)
    Relation   = Conv_1(inv(f)) x Conv_2(inv(f))        (B, N, N)    (Eq. 2)
    Map(X)     = ReLU(BN(Conv(X)))                                   (Eq. 3)
    Relation_1 = Map(Reshape(Relation))                              (Eq. 4)
    Relation_2 = Map(Reshape(Relation).T)                            (Eq. 5)
    Em(f)      = Gap(Conv_1x1(f))                                    (Eq. 6)
    Attention  = Conv(Concat(Em(f), Relation_1, Relation_2))         (Eq. 7)
    output     = sigmoid(Attention) * f

Relation_1 and Relation_2 without the N x N matrix. Eq. 3's Conv is a 1x1 conv
(weight ``W (N_r, N)``, no bias) before its BN, i.e. linear in the relation, so
with ``O_1, O_2 (C', N)`` the outputs of Eq. 1:

    Conv(Reshape(O_1^T O_2))   = W O_1^T O_2    = (W O_1^T) O_2         (Eq. 4 before BN)
    Conv(Reshape(O_1^T O_2)^T) = W O_2^T O_1    = (W O_2^T) O_1         (Eq. 5 before BN)

two thin products of O(N N_r C') work and memory instead of O(N^2 (C' + N_r)):
:func:`relation_maps`, used in training and evaluation. :func:`relation_maps_reference`
builds Eq. 2-5 literally; ``forward(..., return_details=True)`` (what ``explain()``
uses) takes it, since the figures need the N x N relation itself.

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


def relation_maps_reference(
    out_1: torch.Tensor, out_2: torch.Tensor, map_1: nn.Sequential, map_2: nn.Sequential, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 2, 4, 5 literally: ``out_1, out_2 (B, C', N)`` -> relation ``(B, N, N)``, Relation_1, Relation_2 ``(B, N_r, H, W)``."""
    B, _, N = out_1.shape
    H, W = size
    relation = out_1.transpose(1, 2) @ out_2  # (B, N, N)  Eq. 2
    # Reshape: row i of the relation becomes channel i of an (N, H, W) map, i.e.
    # pixel j holds relation(i, j) for all i; the transpose holds relation(j, i).
    reshaped = relation.view(B, N, H, W)  # (B, N, H, W)
    transposed = relation.transpose(1, 2).reshape(B, N, H, W)  # (B, N, H, W)
    return relation, map_1(reshaped), map_2(transposed)  # Eq. 4, Eq. 5: (B, N_r, H, W) each


def _mapped_product(map_layer: nn.Sequential, left: torch.Tensor, right: torch.Tensor, size: tuple[int, int]):
    """``Map(Reshape(left^T right))`` of Eq. 3 as ``BN-ReLU((W left^T) right)``: ``left, right (B, C', N)`` -> ``(B, N_r, H, W)``."""
    conv, bn, relu = map_layer
    weight = conv.weight.flatten(1)  # (N_r, N)  the 1x1 conv's weight
    # (left @ W^T) is one (B*C', N) x (N, N_r) GEMM; W @ left^T would broadcast W over the batch
    projected = left @ weight.t()  # (B, C', N_r) = (W left^T)^T
    mapped = projected.transpose(1, 2) @ right  # (B, N_r, N)  = Conv(Reshape(left^T right))
    return relu(bn(mapped.view(mapped.shape[0], -1, *size)))  # (B, N_r, H, W)


def relation_maps(
    out_1: torch.Tensor, out_2: torch.Tensor, map_1: nn.Sequential, map_2: nn.Sequential, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relation_1 and Relation_2 (Eq. 4, 5) without the N x N relation (module docstring): ``(B, N_r, H, W)`` each.

    Equal to :func:`relation_maps_reference`'s up to float rounding, forward and backward.
    """
    relation_1 = _mapped_product(map_1, out_1, out_2, size)  # (B, N_r, H, W)  Eq. 4
    relation_2 = _mapped_product(map_2, out_2, out_1, size)  # (B, N_r, H, W)  Eq. 5
    return relation_1, relation_2


class GSRPA(nn.Module):
    """GSRPA, MBGN Eq. 1-7: spatial attention from the global pixel-to-pixel relation matrix.

    Choices where the paper is silent (following RGA-S, which GSRPA extends):
    conv blocks and embedding reduce C to C/``channel_ratio`` (8); each mapping layer
    reduces N relation channels to N/``spatial_ratio`` (8); Eq. 7's "Conv" is RGA-S's
    Conv-BN-ReLU, Conv-BN pair (hidden width /``down_ratio`` 8), and a sigmoid keeps
    the attention in (0, 1). Eq. 6's "Gap" averages over *channels* to one spatial
    map (as RGA-S), since a spatially pooled scalar could not be concatenated with
    the (N_r, H, W) relation maps. N = H*W is fixed at build time: ``spatial_size``.

    Eq. 7's hidden width is ``max(min_hidden, joint // down_ratio)`` with ``joint = 1 + 2 N_r``:
    RGA-S's ``joint // 8`` alone drops to 1 channel when N <= 63 (layer3 and layer4 at
    128x64, Branch g's layer4 even at 384x128), and one ReLU'd channel enters the last BN
    as exact zeros at a third of the positions. ``min_hidden=8`` by default (``1``: RGA-S's).

    ``zero_init_attention=True`` starts Eq. 7's last BN at gamma = 0, so every gate starts
    at sigmoid(0) = 0.5 and the attention path sends no gradient into the backbone at
    first (the role of RedNet's/ResNet's zero last BN; not in the paper, so off by default).
    ``literal_relation`` / ``reference_involution``: use the literal Eq. 2-5
    (:func:`relation_maps_reference`) and :func:`~reidlab.models.involution.involution_reference`
    in every forward (same results, slower; for tests and benchmarks).
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
        min_hidden: int = 8,
        zero_init_attention: bool = False,
        literal_relation: bool = False,
        reference_involution: bool = False,
        involution_init: str = "rednet",
    ):
        super().__init__()
        if min_hidden < 1:
            raise ValueError(f"GSRPA: min_hidden must be >= 1, got {min_hidden}")
        self.literal_relation = literal_relation
        self.channels = channels
        self.spatial_size = (int(spatial_size[0]), int(spatial_size[1]))
        self.num_pixels = self.spatial_size[0] * self.spatial_size[1]  # N
        inter_channels = max(1, channels // channel_ratio)
        relation_channels = max(1, self.num_pixels // spatial_ratio)
        self.involution = InvolutionBlock(channels, kernel_size, group_channels, reference=reference_involution,
                                          init=involution_init)
        self.conv_1 = conv_bn_relu(channels, inter_channels)  # Eq. 1, i = 1
        self.conv_2 = conv_bn_relu(channels, inter_channels)  # Eq. 1, i = 2
        self.map_1 = conv_bn_relu(self.num_pixels, relation_channels)  # Eq. 3 for Eq. 4
        self.map_2 = conv_bn_relu(self.num_pixels, relation_channels)  # Eq. 3 for Eq. 5
        self.embed = conv_bn_relu(channels, inter_channels)  # Conv_1x1 of Eq. 6
        joint = 1 + 2 * relation_channels
        hidden = max(min_hidden, joint // down_ratio)
        self.attention_conv = nn.Sequential(  # Conv of Eq. 7
            nn.Conv2d(joint, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1, bias=False), nn.BatchNorm2d(1),
        )
        if zero_init_attention:
            nn.init.zeros_(self.attention_conv[-1].weight)

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
        g = self.involution(f)  # (B, C, H, W)  inv(f)
        out_1 = self.conv_1(g).flatten(2)  # (B, C', N)
        out_2 = self.conv_2(g).flatten(2)  # (B, C', N)
        relation = None
        if return_details or self.literal_relation:  # the N x N relation, for explain() (Eq. 2-5 literally)
            relation, relation_1, relation_2 = relation_maps_reference(out_1, out_2, self.map_1, self.map_2, (H, W))
        else:  # (B, N_r, H, W) each, Eq. 4-5 without the N x N matrix
            relation_1, relation_2 = relation_maps(out_1, out_2, self.map_1, self.map_2, (H, W))
        embedding = self.embed(f).mean(dim=1, keepdim=True)  # (B, 1, H, W)  Eq. 6
        logits = self.attention_conv(torch.cat([embedding, relation_1, relation_2], dim=1))  # (B, 1, H, W)  Eq. 7
        attention = torch.sigmoid(logits)  # (B, 1, H, W)
        out = attention * f  # (B, C, H, W)
        if return_details:
            return out, GSRPADetails(relation, relation_1, relation_2, embedding, attention)
        return out
