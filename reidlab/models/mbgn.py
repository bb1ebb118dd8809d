"""Multiple Biological Granularities Network (MBGN; Tu, Guan, Kuang, ICMR 2022), Fig. 1, Sec. 3.1-3.4.

    images -> ResNet stem, layer1..3 (GSRPA after each of the last stages, Table 4)
      Branch g: own layer4 (stride 2) [+ GSRPA] -> GAP -> global feature g
      Branch l: own layer4 (stride 1) [+ GSRPA] -> GMP -> global feature l
                AABS (Algorithm 1) -> parts B1..B5 -> fusion (B1, B1+B2, .., B5)
                parts halved along the width -> 10 vectors -> C(10,2)=45 cosines -> 3 FC -> structure feature
      every feature -> BN (parts: reduction to 256, as MGN) -> dropout -> classifier (L_id)
      global features -> triplet (L_tri, 2048-d, Sec. 3.4);  L = L_id + 2 L_tri (Eq. 8)
      test: the (BN'd / reduced) features concatenated.

Flags make every ablation row of Tables 2-3 the same model: ``use_global_branch``,
``use_aabs``, ``attention`` ("gsrpa" | "cbam" | None), ``num_attention_stages``,
``fusion`` (see :data:`FUSIONS`), ``use_structure``.

Choices where the paper is silent:
- input size: 384x128 (MGN's, which MBGN builds on): stage 4 of Branch l is 24x8 and
  the body ratio 1:1:1:1.5:1.5 falls on whole rows (4, 4, 4, 6, 6).
- "GSRPA after the last four residual blocks": after layer1..3 (shared), and after
  layer4 of *each* branch (own module, own N), since the branches own their layer4.
- part and fused features are average pooled over their rows (PCB's baseline pooling,
  and the GAP that AABS compares); a fused unit "B1+B2" pools the union of the rows.
- Branch l's global max-pooled feature is present in every row (the triplet loss of
  Eq. 8 needs a global feature), so "Baseline" = Branch l with PCB's six stripes.
- "mgn" fusion: MGN's 2- and 3-way splits taken on Branch l's map (not MGN's three branches).
- structure feature: 45 -> 256 -> 256 -> ``structure_dim`` FC layers (BN+ReLU between), trained by
  its own ID classifier; dropout 0.5 before every classifier.
- which features the triplet loss sees (``triplet_features``): Sec. 3.4 says metric learning
  uses "2048-dimensional human structure features without dimensionality reduction".
  ``"structure"``: the structure feature (``structure_dim=2048``), before its BN, is the one
  triplet feature: the paper's reading, the MBGN preset's default. ``"global"``: the 2048-d
  global features of Branch g and Branch l (the class default, and every Table 2/3 row
  without the structure feature). Eq. 8's terms are means over their heads.
- ``aabs_fixed_part_means``: Algorithm 1 lines 5-9 literally (see reidlab.models.aabs);
  ``attention_zero_init``: GSRPA's Eq. 7 last BN at gamma = 0 (an option; not the paper's);
  ``involution_init``: ``"rednet"`` (default: the official RedNet code's Kaiming fan_out) or
  ``"pytorch"`` (PyTorch's default conv init, as before; for the comparison in the README).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlab.losses import LossTerm
from reidlab.models import eval_mode, register_model
from reidlab.models.aabs import AABS, BODY_RATIO, AABSResult, plane_bounds, pool_regions
from reidlab.models.backbone import ResNetBackbone, copy_stage
from reidlab.models.cbam import CBAMSpatial
from reidlab.models.gsrpa import GSRPA
from reidlab.models.heads import ClassifierHead, Reduction

# fusion name -> partitions: (ratio, part name prefix, groups of adjacent parts, each pooled as one unit)
FUSIONS: dict[str, list[tuple[tuple[float, ...], str, tuple[tuple[int, ...], ...]]]] = {
    "pcb": [((1.0,) * 6, "P", ((0,), (1,), (2,), (3,), (4,), (5,)))],  # PCB: six equal stripes
    "m": [(BODY_RATIO, "B", ((0, 1), (1, 2), (2, 3), (3, 4)))],  # Table 3 "M"
    "m+f": [(BODY_RATIO, "B", ((0,), (0, 1), (1, 2), (2, 3), (3, 4), (4,)))],  # MBGN's (Sec. 3.1)
    "m+c": [(BODY_RATIO, "B", ((0, 1), (1, 2), (2, 3), (3, 4), (0, 1, 2), (1, 2, 3), (2, 3, 4)))],
    "mgn": [((1.0, 1.0), "H", ((0,), (1,))), ((1.0, 1.0, 1.0), "T", ((0,), (1,), (2,)))],  # MGN's splits
}
ATTENTIONS = ("gsrpa", "cbam", None)
TRIPLET_FEATURES = ("global", "structure")  # "none" is accepted for None (a null in a config merge removes a key)


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if len(size) != 2:
        raise ValueError(f"input_size must be (height, width), got {size!r}")
    return (int(size[0]), int(size[1]))


def stage_sizes(input_size: tuple[int, int], last_stride: int = 1) -> list[tuple[int, int]]:
    """Spatial size after ResNet layer1..layer4 for an ``input_size`` image (every stride-2 step is ceil(x/2))."""
    h, w = _pair(input_size)
    half = lambda v: (v + 1) // 2  # noqa: E731 (conv k3 s2 p1, conv k7 s2 p3, maxpool k3 s2 p1)
    h, w = half(half(h)), half(half(w))  # stem
    sizes = [(h, w)]
    for stride in (2, 2, last_stride):
        if stride == 2:
            h, w = half(h), half(w)
        sizes.append((h, w))
    return sizes


def attention_module(kind: str | None, channels: int, spatial_size: tuple[int, int],
                     zero_init: bool = False, involution_init: str = "rednet") -> nn.Module | None:
    """GSRPA / CBAM-S / nothing; ``zero_init``: GSRPA's Eq. 7 last BN starts at gamma = 0 (an option, not the paper's);
    ``involution_init``: "rednet" (the official RedNet init) or "pytorch" (PyTorch's default)."""
    if kind == "gsrpa":
        return GSRPA(channels, spatial_size, zero_init_attention=zero_init, involution_init=involution_init)
    if kind == "cbam":
        return CBAMSpatial(channels)
    if kind is None:
        return None
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")


class GlobalHead(nn.Module):
    """Global feature head: BN -> dropout (0.5, MBGN Sec. 4.2) -> bias-free classifier.
    Returns ``(bn_feature, logits)``. Unlike BoT's BNNeck the BN keeps its learnable shift."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.classifier = ClassifierHead(in_dim, num_classes, dropout, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.bn(x)  # (B, D)
        return feature, self.classifier(feature)  # (B, D), (B, num_classes)


class PartHead(nn.Module):
    """Part feature head as MGN: reduction FC + BN + ReLU to ``out_dim`` (256) -> dropout -> classifier."""

    def __init__(self, in_dim: int, num_classes: int, out_dim: int = 256, dropout: float = 0.5):
        super().__init__()
        self.reduce = Reduction(in_dim, out_dim, kind="linear")
        self.classifier = ClassifierHead(out_dim, num_classes, dropout, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.reduce(x)  # (B, out_dim)
        return feature, self.classifier(feature)  # (B, out_dim), (B, num_classes)


class StructureFeature(nn.Module):
    """MBGN's structure (posture) feature, Sec. 3.1: each part halved along the width,
    the 2P pooled vectors' C(2P, 2) cosine similarities -> three FC layers.

    ``forward(feature, starts, ends)`` returns ``(similarity (B, 2P, 2P), structure (B, out_dim))``;
    maps are ordered part 1 left, part 1 right, part 2 left, ...
    """

    def __init__(self, num_parts: int = 5, hidden: int = 256, out_dim: int = 256):
        super().__init__()
        self.num_maps = 2 * num_parts
        self.num_pairs = self.num_maps * (self.num_maps - 1) // 2  # 45 for five parts
        self.mlp = nn.Sequential(
            nn.Linear(self.num_pairs, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )
        pairs = torch.triu_indices(self.num_maps, self.num_maps, offset=1)
        self.register_buffer("pairs", pairs, persistent=False)  # (2, num_pairs)

    def forward(self, feature: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor):
        W = feature.shape[-1]
        if W < 2:
            raise ValueError(f"StructureFeature: the map must be at least 2 columns wide to halve, got {W}")
        left = pool_regions(feature[..., : W // 2], starts, ends)  # (B, P, C)
        right = pool_regions(feature[..., W // 2 :], starts, ends)  # (B, P, C)
        vectors = torch.stack([left, right], dim=2).flatten(1, 2)  # (B, 2P, C)
        unit = F.normalize(vectors.float(), dim=-1)  # (B, 2P, C)
        similarity = unit @ unit.transpose(1, 2)  # (B, 2P, 2P)
        upper = similarity[:, self.pairs[0], self.pairs[1]]  # (B, num_pairs)
        return similarity, self.mlp(upper.to(feature.dtype))  # (B, 2P, 2P), (B, out_dim)


@dataclass
class MBGNExplanation:
    """What MBGN computed for a batch (``MBGN.explain``), no hooks needed.

    attention: per attended stage ("layer1".."layer3", "layer4_g", "layer4_l") its
        ``GSRPADetails`` (relation (B,N,N), relation_1/relation_2, embedding, attention (B,1,H,W))
        or ``CBAMDetails`` (attention).
    aabs: one ``AABSResult`` per partition (MBGN: one, the five parts B1..B5): initial planes,
        the trace over repetitions, the final planes (B, n). Rows of ``local_map``.
    part_starts / part_ends: (B, P) row ranges of the parts, per partition.
    part_features: (B, P, C) pooled parts per partition; fused_features: (B, G, C) pooled fused
        units in ``fused_names`` order (e.g. B1, B1+B2, ...).
    structure_similarity: (B, 2P, 2P) cosines of the half-width part vectors (10 x 10), or None.
    local_map: Branch l's (B, C, H, W) map after its attention; features: (B, D) test features.
    """

    attention: dict = field(default_factory=dict)
    aabs: list = field(default_factory=list)
    part_starts: list = field(default_factory=list)
    part_ends: list = field(default_factory=list)
    part_features: list = field(default_factory=list)
    fused_features: torch.Tensor | None = None
    fused_names: list = field(default_factory=list)
    structure_similarity: torch.Tensor | None = None
    local_map: torch.Tensor | None = None
    features: torch.Tensor | None = None


class MBGN(nn.Module):
    """MBGN (Fig. 1, Sec. 3.1); see the module docstring for the layout and the choices made."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        pretrained: bool | str = True,
        input_size: Sequence[int] = (384, 128),
        use_global_branch: bool = True,
        use_aabs: bool = True,
        attention: str | None = "gsrpa",
        num_attention_stages: int = 4,
        fusion: str = "m+f",
        use_structure: bool = True,
        part_dim: int = 256,
        structure_dim: int = 256,
        dropout: float = 0.5,
        part_pool: str = "avg",
        margin: float = 1.2,
        triplet_weight: float = 2.0,
        triplet_features: str = "global",
        structure_hidden: int = 256,
        aabs_fixed_part_means: bool = False,
        attention_zero_init: bool = False,
        involution_init: str = "rednet",
    ):
        super().__init__()
        if triplet_features not in TRIPLET_FEATURES:
            raise ValueError(f"triplet_features must be one of {TRIPLET_FEATURES}, got {triplet_features!r}")
        if triplet_features == "structure" and not use_structure:
            raise ValueError("triplet_features='structure' needs use_structure=True (the triplet is on the structure feature)")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
        attention = None if attention == "none" else attention  # "none": no attention, also in JSON configs
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if not 0 <= num_attention_stages <= 4:
            raise ValueError(f"num_attention_stages must be 0..4, got {num_attention_stages}")
        if part_pool not in ("avg", "max"):
            raise ValueError(f"part_pool must be 'avg' or 'max', got {part_pool!r}")
        self.input_size = _pair(input_size)
        self.use_global_branch, self.use_aabs, self.use_structure = use_global_branch, use_aabs, use_structure
        self.attention_kind, self.num_attention_stages = attention, num_attention_stages
        self.fusion, self.part_pool = fusion, part_pool
        self.triplet_features = triplet_features

        backbone = ResNetBackbone(depth=depth, last_stride=1, pretrained=pretrained)
        channels = backbone.stage_channels
        self.stem, self.layer1, self.layer2, self.layer3 = backbone.stem, backbone.layer1, backbone.layer2, backbone.layer3
        self.layer4_l = copy_stage(backbone.layer4, stride=1)  # Branch l: stride 1
        self.layer4_g = copy_stage(backbone.layer4, stride=2) if use_global_branch else None  # Branch g
        del backbone

        sizes_l = stage_sizes(self.input_size, last_stride=1)
        size_g = stage_sizes(self.input_size, last_stride=2)[3]
        attended = range(5 - num_attention_stages, 5) if attention is not None else range(0)
        self.attention = nn.ModuleDict()
        for stage in attended:
            if stage < 4:
                self.attention[f"layer{stage}"] = attention_module(attention, channels[stage - 1], sizes_l[stage - 1],
                                                                     attention_zero_init, involution_init)
            else:
                self.attention["layer4_l"] = attention_module(attention, channels[3], sizes_l[3], attention_zero_init,
                                                                 involution_init)
                if use_global_branch:
                    self.attention["layer4_g"] = attention_module(attention, channels[3], size_g, attention_zero_init,
                                                                     involution_init)
        self.local_size = sizes_l[3]

        C = channels[3]
        self.partitions = FUSIONS[fusion]
        self.aabs = nn.ModuleList(AABS(ratio, enabled=use_aabs, fixed_part_means=aabs_fixed_part_means)
                                  for ratio, _, _ in self.partitions)
        for ratio, _, _ in self.partitions:
            if len(ratio) > self.local_size[0]:
                raise ValueError(f"input_size {self.input_size} gives a {self.local_size[0]}-row map, "
                                 f"too short for {len(ratio)} parts")
        self.fused_names = [
            "+".join(f"{prefix}{i + 1}" for i in group) for _, prefix, groups in self.partitions for group in groups
        ]
        self.head_g = GlobalHead(C, num_classes, dropout) if use_global_branch else None
        self.head_l = GlobalHead(C, num_classes, dropout)
        self.part_heads = nn.ModuleList(PartHead(C, num_classes, part_dim, dropout) for _ in self.fused_names)
        if use_structure:
            self.structure = StructureFeature(len(self.partitions[0][0]), structure_hidden, structure_dim)
            self.head_structure = GlobalHead(structure_dim, num_classes, dropout)
        else:
            self.structure = self.head_structure = None

        self.loss_terms = (
            LossTerm("id", "logits", 1.0),
            LossTerm("triplet", "triplet", triplet_weight, {"margin": margin}),
        )
        self.requires: set[str] = set()

    # ------------------------------------------------------------------ forward
    def _check_input(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"MBGN expects images (B, 3, H, W), got {tuple(images.shape)}")
        if self.attention_kind == "gsrpa" and len(self.attention) and tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(
                f"MBGN with GSRPA was built for input_size={self.input_size} (GSRPA's N = H*W is fixed), "
                f"got images of size {tuple(images.shape[-2:])}; build it with input_size={tuple(images.shape[-2:])}"
            )

    def _attend(self, name: str, x: torch.Tensor, explanation: MBGNExplanation | None) -> torch.Tensor:
        if name not in self.attention:
            return x
        if explanation is None:
            return self.attention[name](x)
        x, details = self.attention[name](x, return_details=True)
        explanation.attention[name] = details
        return x

    def _forward(self, images: torch.Tensor, explanation: MBGNExplanation | None = None) -> dict:
        self._check_input(images)
        x = self.stem(images)  # (B, 64, H/4, W/4)
        for name in ("layer1", "layer2", "layer3"):
            x = self._attend(name, getattr(self, name)(x), explanation)  # (B, C_k, H_k, W_k)

        logits, triplet, test_features = [], [], []
        use_global_triplet = self.triplet_features == "global"
        if self.layer4_g is not None:  # Branch g: global average pooling
            x_g = self._attend("layer4_g", self.layer4_g(x), explanation)  # (B, C, H/32, W/32)
            global_g = x_g.mean(dim=(2, 3))  # (B, C)
            feature, score = self.head_g(global_g)
            logits.append(score); test_features.append(feature)  # noqa: E702
            if use_global_triplet:
                triplet.append(global_g)

        x_l = self._attend("layer4_l", self.layer4_l(x), explanation)  # (B, C, H/16, W/16)
        global_l = x_l.amax(dim=(2, 3))  # (B, C)  Branch l: global max pooling
        feature, score = self.head_l(global_l)
        logits.append(score); test_features.append(feature)  # noqa: E702
        if use_global_triplet:
            triplet.append(global_l)

        fused_all, first_bounds = [], None
        for aabs, (ratio, _, groups) in zip(self.aabs, self.partitions):
            result: AABSResult = aabs(x_l, return_trace=explanation is not None)
            starts, ends = plane_bounds(result.planes, x_l.shape[2])  # (B, P), (B, P)
            first_bounds = first_bounds or (starts, ends)
            first = torch.tensor([g[0] for g in groups], device=x_l.device)
            last = torch.tensor([g[-1] for g in groups], device=x_l.device)
            fused = pool_regions(x_l, starts[:, first], ends[:, last], self.part_pool)  # (B, G, C)
            fused_all.append(fused)
            if explanation is not None:
                explanation.aabs.append(result)
                explanation.part_starts.append(starts)
                explanation.part_ends.append(ends)
                explanation.part_features.append(pool_regions(x_l, starts, ends, self.part_pool))  # (B, P, C)
        fused = torch.cat(fused_all, dim=1)  # (B, G, C)
        for k, head in enumerate(self.part_heads):
            feature, score = head(fused[:, k])
            logits.append(score); test_features.append(feature)  # noqa: E702

        if self.structure is not None:
            similarity, structure = self.structure(x_l, *first_bounds)  # (B, 10, 10), (B, structure_dim)
            feature, score = self.head_structure(structure)
            logits.append(score); test_features.append(feature)  # noqa: E702
            if not use_global_triplet:
                triplet.append(structure)  # Sec. 3.4: the structure feature, before its BN, under L_tri
            if explanation is not None:
                explanation.structure_similarity = similarity

        features = torch.cat(test_features, dim=1)  # (B, D)
        if explanation is not None:
            explanation.fused_features, explanation.fused_names = fused, list(self.fused_names)
            explanation.local_map, explanation.features = x_l, features
        if not self.training:
            return {"features": features}
        return {"features": features, "logits": logits, "triplet": triplet}

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        return self._forward(images)

    @torch.no_grad()
    def explain(self, images: torch.Tensor) -> MBGNExplanation:
        """Run the model in eval mode (restoring the mode after) and return an :class:`MBGNExplanation`."""
        explanation = MBGNExplanation()
        with eval_mode(self):
            self._forward(images, explanation)
        return explanation


class ResNetGSRPA(nn.Module):
    """ResNet with GSRPA after its last ``num_attention_stages`` stages (MBGN Table 4),
    otherwise a plain global re-ID model: GAP -> triplet; BN -> dropout -> classifier (BNNeck-style).

    Last stride 1 (the usual re-ID choice, also RGA-S's); loss as MBGN Eq. 8.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        pretrained: bool | str = True,
        input_size: Sequence[int] = (384, 128),
        num_attention_stages: int = 4,
        attention: str | None = "gsrpa",
        last_stride: int = 1,
        dropout: float = 0.5,
        margin: float = 1.2,
        triplet_weight: float = 2.0,
    ):
        super().__init__()
        if not 0 <= num_attention_stages <= 4:
            raise ValueError(f"num_attention_stages must be 0..4, got {num_attention_stages}")
        self.input_size = _pair(input_size)
        self.attention_kind = attention
        self.backbone = ResNetBackbone(depth=depth, last_stride=last_stride, pretrained=pretrained)
        sizes = stage_sizes(self.input_size, last_stride)
        channels = self.backbone.stage_channels
        self.attention = nn.ModuleDict()
        if attention is not None:
            for stage in range(5 - num_attention_stages, 5):
                self.attention[f"layer{stage}"] = attention_module(attention, channels[stage - 1], sizes[stage - 1])
        self.head = GlobalHead(channels[3], num_classes, dropout)
        self.loss_terms = (
            LossTerm("id", "logits", 1.0),
            LossTerm("triplet", "triplet", triplet_weight, {"margin": margin}),
        )
        self.requires: set[str] = set()

    def _forward(self, images: torch.Tensor, details: dict | None = None) -> dict:
        if self.attention_kind == "gsrpa" and len(self.attention) and tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(
                f"resnet_gsrpa was built for input_size={self.input_size} (GSRPA's N = H*W is fixed), "
                f"got images of size {tuple(images.shape[-2:])}; build it with input_size={tuple(images.shape[-2:])}"
            )
        x = self.backbone.stem(images)  # (B, 64, H/4, W/4)
        for k, stage in enumerate(self.backbone.stages(), start=1):
            x = stage(x)  # (B, C_k, H_k, W_k)
            name = f"layer{k}"
            if name in self.attention:
                if details is None:
                    x = self.attention[name](x)
                else:
                    x, details[name] = self.attention[name](x, return_details=True)
        pooled = x.mean(dim=(2, 3))  # (B, C)
        feature, score = self.head(pooled)
        if not self.training:
            return {"features": feature}
        return {"features": feature, "logits": [score], "triplet": [pooled]}

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        return self._forward(images)

    @torch.no_grad()
    def explain(self, images: torch.Tensor) -> dict:
        """Eval-mode forward returning ``{stage name: GSRPADetails/CBAMDetails}`` (mode restored after)."""
        details: dict = {}
        with eval_mode(self):
            self._forward(images, details)
        return details


@register_model("mbgn")
def build_mbgn(num_classes: int, input_size: Sequence[int] = (384, 128), **cfg) -> MBGN:
    """MBGN for ``input_size`` images (H, W); ``cfg`` as :class:`MBGN` (depth, pretrained, ablation flags, ...)."""
    return MBGN(num_classes=num_classes, input_size=input_size, **cfg)


@register_model("resnet_gsrpa")
def build_resnet_gsrpa(num_classes: int, input_size: Sequence[int] = (384, 128), **cfg) -> ResNetGSRPA:
    """ResNet + N GSRPA (MBGN Table 4) for ``input_size`` images; ``cfg`` as :class:`ResNetGSRPA`."""
    return ResNetGSRPA(num_classes=num_classes, input_size=input_size, **cfg)
