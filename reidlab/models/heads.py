"""Heads shared by the baselines and paper models: BNNeck, reduction blocks, classifiers.

BNNeck (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person
Re-identification", CVPR-W 2019, Sec. 3.6 / Fig. 5): the pooled feature ``f_t``
feeds the triplet loss; a BatchNorm1d gives ``f_i`` which feeds a bias-free
classifier (ID loss). At inference the BN'd ``f_i`` is the retrieval feature
(BoT's ``neck_feat="after"``, its better choice with cosine distance); the BN
shift is frozen at zero (BoT: a learnable shift would move the features off the
hypersphere the classifier sees).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def init_classifier(linear: nn.Linear) -> None:
    """BoT's classifier init: N(0, 0.001), zero bias."""
    nn.init.normal_(linear.weight, std=0.001)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def init_kaiming(module: nn.Module) -> None:
    """Kaiming init for new convolutions / linears, unit/zero init for new BatchNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class BNNeck(nn.Module):
    """BNNeck (BoT Sec. 3.6): feature -> BN (frozen zero shift) -> bias-free classifier.

    ``forward(feature)`` returns ``(neck_feature, logits)``: the triplet loss
    reads the input ``feature``, the ID loss reads ``logits``, retrieval reads
    ``neck_feature`` (see the module docstring).
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.bn.bias.requires_grad_(False)  # BoT: no shift
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        init_classifier(self.classifier)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        neck_feature = self.bn(feature)  # (B, D)
        return neck_feature, self.classifier(neck_feature)  # (B, D), (B, num_classes)


class Reduction(nn.Module):
    """Dimension reduction: 1x1 conv (or FC) + BN + ReLU, as in PCB and MGN.

    ``kind="conv"`` takes ``(B, C, H, W)`` maps (PCB/MGN apply it to pooled
    ``(B, C, 1, 1)`` stripes) and returns the same layout; ``kind="linear"``
    takes ``(B, C)``. ``relu=False`` gives the linear projection (MGN's code
    keeps the ReLU; PCB's does too).
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "conv", relu: bool = True):
        super().__init__()
        if kind not in ("conv", "linear"):
            raise ValueError(f"Reduction kind must be 'conv' or 'linear', got {kind!r}")
        layers: list[nn.Module]
        if kind == "conv":
            layers = [nn.Conv2d(in_dim, out_dim, 1, bias=False), nn.BatchNorm2d(out_dim)]
        else:
            layers = [nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)
        self.kind = kind
        init_kaiming(self.block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ClassifierHead(nn.Module):
    """Optional dropout then a linear ID classifier (PCB's per-stripe classifier)."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes, bias=bias)
        init_classifier(self.fc)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(feature))  # (B, num_classes)


def pool2d(feature_map: torch.Tensor, kind: str = "avg", output_size=(1, 1)) -> torch.Tensor:
    """Adaptive average or max pooling to ``output_size`` (stripes: ``(n, 1)``)."""
    if kind == "avg":
        return nn.functional.adaptive_avg_pool2d(feature_map, output_size)
    if kind == "max":
        return nn.functional.adaptive_max_pool2d(feature_map, output_size)
    raise ValueError(f"pooling must be 'avg' or 'max', got {kind!r}")
