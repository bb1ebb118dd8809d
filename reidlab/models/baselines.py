"""Baselines: BNNeck (strong global baseline), PCB (MBGN's ablation "Baseline"), MGN.

Every model follows the output convention of :mod:`reidlab.models` and declares
its total loss in ``loss_terms``: ``L = L_id + lambda * L_tri`` (MBGN Eq. 8) with
MBGN's defaults lambda = 2 and margin 1.2 (MBGN Sec. 4.2), so that a baseline and
the paper's model train under the same loss unless told otherwise.

Each model splits ``forward_features(images) -> feature map`` and
``forward_head(feature map) -> outputs`` (timm style).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from reidlab.losses import LossTerm
from reidlab.models import register_model
from reidlab.models.backbone import ResNetBackbone, copy_stage
from reidlab.models.heads import BNNeck, ClassifierHead, Reduction, pool2d


def id_triplet_terms(
    id_weight: float = 1.0,
    triplet_weight: float = 2.0,
    margin: float = 1.2,
    label_smoothing: float = 0.0,
) -> tuple[LossTerm, ...]:
    """``L = id_weight * L_id + triplet_weight * L_tri`` (MBGN Eq. 8, lambda = 2, margin 1.2)."""
    terms = []
    if id_weight > 0:
        options = {"label_smoothing": label_smoothing} if label_smoothing else {}
        terms.append(LossTerm("id", "logits", id_weight, options))
    if triplet_weight > 0:
        terms.append(LossTerm("triplet", "triplet", triplet_weight, {"margin": margin}))
    if not terms:
        raise ValueError("id_weight and triplet_weight are both 0: the model would have no loss")
    return tuple(terms)


class _SplitForward(nn.Module):
    """What the baselines share: ``forward = forward_head(forward_features(images))`` (timm's
    split) and no batch fields besides the images (``requires``)."""

    requires: frozenset = frozenset()

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        return self.forward_head(self.forward_features(images))


def check_stripe_rows(model: str, feature_map: torch.Tensor, stripes: int) -> None:
    """Refuse a feature map with fewer rows than stripes: adaptive pooling would repeat rows and
    train a model whose "parts" are copies of each other, silently."""
    rows = feature_map.shape[-2]
    if rows < stripes:
        raise ValueError(
            f"{model}: {stripes} horizontal stripes need a feature map of >= {stripes} rows, but this input gives "
            f"{rows} (feature map {tuple(feature_map.shape[-2:])}); use a taller input (e.g. --height "
            f"{stripes * 16} with last_stride=1) or fewer stripes"
        )


class BNNeckBaseline(_SplitForward):
    """Global ResNet + BNNeck (BoT, Luo et al. 2019): the strong baseline.

    backbone (last stride 1) -> global average pooling -> f_t (triplet)
    -> BN -> f_i -> bias-free classifier (ID). Retrieval uses f_i
    (``neck_feature="after"``) or f_t (``"before"``).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        pretrained: bool | str = True,
        pooling: str = "avg",
        neck_feature: str = "after",
        id_weight: float = 1.0,
        triplet_weight: float = 2.0,
        margin: float = 1.2,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if neck_feature not in ("after", "before"):
            raise ValueError(f"neck_feature must be 'after' or 'before', got {neck_feature!r}")
        self.backbone = ResNetBackbone(depth, last_stride, pretrained)
        self.pooling = pooling
        self.neck_feature = neck_feature
        self.neck = BNNeck(self.backbone.out_channels, num_classes)
        self.feature_dim = self.backbone.out_channels
        self.num_classes = num_classes
        self.loss_terms = id_triplet_terms(id_weight, triplet_weight, margin, label_smoothing)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)  # (B, C, h, w)

    def forward_head(self, feature_map: torch.Tensor) -> dict:
        global_feature = pool2d(feature_map, self.pooling).flatten(1)  # (B, C)
        neck_feature, logits = self.neck(global_feature)  # (B, C), (B, num_classes)
        features = neck_feature if self.neck_feature == "after" else global_feature
        if not self.training:
            return {"features": features}
        return {"features": features, "logits": [logits], "triplet": [global_feature]}


class PCBBaseline(_SplitForward):
    """PCB (Sun et al., ECCV 2018) with average segmentation: MBGN's ablation "Baseline" (Sec. 4.4).

    backbone (last stride 1) -> 6 horizontal stripes (average pooling) -> per
    stripe 1x1 conv reduction to 256 + BN + ReLU -> dropout -> classifier.
    ID loss on each stripe; the triplet term (MBGN Eq. 8, on the 2048-d feature
    "without dimensionality reduction", MBGN Sec. 3.4) reads the global average
    of the map. Retrieval: the 6 reduced stripes concatenated (PCB's "h"
    feature, 6 x 256), or the 6 pooled stripes (``test_feature="pooled"``, 6 x C).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        pretrained: bool | str = True,
        num_stripes: int = 6,
        reduction_dim: int = 256,
        dropout: float = 0.5,
        test_feature: str = "reduced",
        id_weight: float = 1.0,
        triplet_weight: float = 2.0,
        margin: float = 1.2,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if test_feature not in ("reduced", "pooled"):
            raise ValueError(f"test_feature must be 'reduced' or 'pooled', got {test_feature!r}")
        self.backbone = ResNetBackbone(depth, last_stride, pretrained)
        channels = self.backbone.out_channels
        self.num_stripes = num_stripes
        self.test_feature = test_feature
        self.reductions = nn.ModuleList(Reduction(channels, reduction_dim) for _ in range(num_stripes))
        self.classifiers = nn.ModuleList(
            ClassifierHead(reduction_dim, num_classes, dropout) for _ in range(num_stripes)
        )
        self.feature_dim = num_stripes * (reduction_dim if test_feature == "reduced" else channels)
        self.num_classes = num_classes
        self.loss_terms = id_triplet_terms(id_weight, triplet_weight, margin, label_smoothing)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)  # (B, C, h, w)

    def forward_head(self, feature_map: torch.Tensor) -> dict:
        check_stripe_rows("PCB", feature_map, self.num_stripes)
        stripes = pool2d(feature_map, "avg", (self.num_stripes, 1))  # (B, C, S, 1)
        reduced = [
            reduce(stripes[:, :, i : i + 1, :]).flatten(1)  # (B, 256)
            for i, reduce in enumerate(self.reductions)
        ]
        if self.test_feature == "reduced":
            features = torch.cat(reduced, dim=1)  # (B, S*256)
        else:
            features = stripes.flatten(2).transpose(1, 2).flatten(1)  # (B, S*C), stripe-major
        if not self.training:
            return {"features": features}
        logits = [classify(r) for classify, r in zip(self.classifiers, reduced)]  # S x (B, num_classes)
        global_feature = pool2d(feature_map, "avg").flatten(1)  # (B, C)
        return {"features": features, "logits": logits, "triplet": [global_feature]}


class MGNBranch(nn.Module):
    """One MGN branch: its own layer4 copy, a global max-pooled feature and ``parts`` stripes.

    Every pooled vector is reduced to ``reduction_dim`` (1x1 conv + BN + ReLU)
    and classified. Returns (global reduced, [reduced parts], [logits]).
    """

    def __init__(self, layer4: nn.Sequential, in_dim: int, parts: int, reduction_dim: int, num_classes: int, pooling: str):
        super().__init__()
        self.layer4 = layer4
        self.parts = parts
        self.pooling = pooling
        self.reductions = nn.ModuleList(Reduction(in_dim, reduction_dim) for _ in range(1 + parts))
        self.classifiers = nn.ModuleList(
            ClassifierHead(reduction_dim, num_classes) for _ in range(1 + parts)
        )

    def forward(self, shared_map: torch.Tensor):
        branch_map = self.layer4(shared_map)  # (B, C, h, w)
        pooled = [pool2d(branch_map, self.pooling)]  # [(B, C, 1, 1)]
        if self.parts > 0:
            check_stripe_rows("MGN", branch_map, self.parts)
            stripes = pool2d(branch_map, self.pooling, (self.parts, 1))  # (B, C, parts, 1)
            pooled += [stripes[:, :, i : i + 1, :] for i in range(self.parts)]
        reduced = [reduce(p).flatten(1) for reduce, p in zip(self.reductions, pooled)]  # (1+parts) x (B, 256)
        logits = [classify(r) for classify, r in zip(self.classifiers, reduced)]
        return reduced, logits


class MGN(_SplitForward):
    """MGN (Wang et al., "Learning Discriminative Features with Multiple Granularities", ACM MM 2018).

    Shared backbone up to layer3, then three branches each with its own copy of
    layer4: global (stride 2, no parts), 2 stripes and 3 stripes (stride 1).
    Each of the 8 pooled vectors (3 global + 5 parts; max pooling) is reduced to
    256 and classified (ID loss on all 8); the triplet loss reads the 3 reduced
    global features; retrieval concatenates all 8 (8 x 256 = 2048-d).
    Chosen: branches fork after layer3 (the original forks after the first
    block of conv4) so that they reuse :class:`ResNetBackbone`'s stages whole.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        pretrained: bool | str = True,
        part_counts: tuple[int, ...] = (0, 2, 3),
        reduction_dim: int = 256,
        pooling: str = "max",
        id_weight: float = 1.0,
        triplet_weight: float = 2.0,
        margin: float = 1.2,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.backbone = ResNetBackbone(depth, last_stride=2, pretrained=pretrained)
        layer4 = self.backbone.layer4
        del self.backbone.layer4  # each branch owns its copy
        channels = self.backbone.out_channels
        self.branches = nn.ModuleList(
            MGNBranch(
                copy_stage(layer4, stride=2 if parts == 0 else last_stride),
                channels, parts, reduction_dim, num_classes, pooling,
            )
            for parts in part_counts
        )
        self.part_counts = tuple(part_counts)
        self.feature_dim = reduction_dim * sum(1 + p for p in part_counts)
        self.num_classes = num_classes
        self.loss_terms = id_triplet_terms(id_weight, triplet_weight, margin, label_smoothing)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.stem(images)  # (B, 64, H/4, W/4)
        x = self.backbone.layer1(x)
        x = self.backbone.layer2(x)
        return self.backbone.layer3(x)  # (B, C3, H/16, W/16): shared by the branches

    def forward_head(self, shared_map: torch.Tensor) -> dict:
        global_features, all_reduced, all_logits = [], [], []
        for branch in self.branches:
            reduced, logits = branch(shared_map)
            global_features.append(reduced[0])
            all_reduced += reduced
            all_logits += logits
        features = torch.cat(all_reduced, dim=1)  # (B, 8*256)
        if not self.training:
            return {"features": features}
        return {"features": features, "logits": all_logits, "triplet": global_features}


@register_model("bnneck")
def bnneck(num_classes: int, depth: int = 50, last_stride: int = 1, pretrained: bool | str = True, **knobs) -> BNNeckBaseline:
    """Global ResNet + BNNeck; knobs: pooling, neck_feature, id_weight, triplet_weight, margin, label_smoothing."""
    return BNNeckBaseline(num_classes, depth=depth, last_stride=last_stride, pretrained=pretrained, **knobs)


@register_model("pcb")
def pcb(num_classes: int, depth: int = 50, last_stride: int = 1, pretrained: bool | str = True, **knobs) -> PCBBaseline:
    """PCB, average segmentation; knobs: num_stripes, reduction_dim, dropout, test_feature, loss weights."""
    return PCBBaseline(num_classes, depth=depth, last_stride=last_stride, pretrained=pretrained, **knobs)


@register_model("mgn")
def mgn(num_classes: int, depth: int = 50, last_stride: int = 1, pretrained: bool | str = True, **knobs) -> MGN:
    """MGN; knobs: part_counts, reduction_dim, pooling, loss weights."""
    return MGN(num_classes, depth=depth, last_stride=last_stride, pretrained=pretrained, **knobs)
