"""MSRA: multi-level relation aware network (Yang, Zhang, Li, Tang; MSRA Sec. 2, Fig. 1).

    ResNet stem + layer1..layer3 (shared, "the first four layers")
      -> layer4 (stride 2, as ResNet)    -> F_g map -> GAP -> F_g          (global branch, Sec. 2.1)
      -> copy of layer4 with stride 1    -> F_a -> ARM -> F'_a, attribute logits   (Sec. 2.2)
    F_g map x keypoint heat maps -> Pose Pyramid -> F_pose                  (Sec. 2.3)
    FEM: F_fuse = gate(F_pose, F'_a) * F_pose;  F_out = [F_fuse, F_g]        (Sec. 2.4, Eq. 9)
    losses (Sec. 3.1): triplet on F_g (weight 1), cross-entropy on F_out (1.2), K attribute CEs (0.3)

Choices (the paper leaves them open):
- the pose nodes pool the global branch's map ("the product of global features and heat
  map"), reduced by a 1x1 conv to ``pose_dim`` (default 512) so the graph layers stay small
  (F_out 2,560-d with ResNet-50); ``paper_width=True`` keeps 2048-d pose features (F_out
  4,096-d, the paper's width); ``global_last_stride=1`` gives finer heat maps (16x8 instead
  of 8x4 at 256x128; on the 8x4 grid left/right node maps overlap).
- the attribute loss is 0.3 x the MEAN over the K attribute losses (``attribute_reduction=
  "mean"``); the paper's "total loss of K attributes" may be a sum: ``"sum"`` multiplies the
  weight by K (27x on Market), which lets attributes dominate the identity losses.
- inputs smaller than 16 x 16 pixels (32 x 32 with the default last stride 2) are refused:
  the global branch's map would have no rows.
- the CE on F_out goes through a BNNeck (BN, bias-free classifier); retrieval uses the BN'd
  F_out (BoT's "after" feature, as the baselines); the triplet margin is 0.3 (not stated).
- ablations: without ARM, F_fuse = F_pose (no gate) and there is no attribute loss; without
  the pose pyramid, F'_a takes its place in F_out; with neither, F_out = F_g (the baseline).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from reidlab.data.records import AttributeSpec
from reidlab.losses import LossTerm
from reidlab.models import eval_mode, register_model
from reidlab.models.arm import AttributeRelationMining
from reidlab.models.backbone import ResNetBackbone, copy_stage
from reidlab.models.fem import FeatureEnhancement
from reidlab.models.heads import BNNeck
from reidlab.models.heatmaps import DatasetKeypoints, PoseSource
from reidlab.models.pose_pyramid import LEVEL_NAMES, PosePyramid

# The paper's loss weights (Sec. 3.1): attributes 0.3, "global feature loss" 1 (triplet on F_g),
# fusion feature loss 1.2 (cross-entropy on F_out).
ATTRIBUTE_WEIGHT, GLOBAL_WEIGHT, FUSION_WEIGHT = 0.3, 1.0, 1.2


def _as_attribute_spec(spec) -> AttributeSpec | None:
    if spec is None or isinstance(spec, AttributeSpec):
        return spec
    if isinstance(spec, dict):  # e.g. from a JSON/YAML config
        return AttributeSpec(tuple(spec["names"]), tuple(int(c) for c in spec["num_classes"]))
    raise TypeError(f"attribute_spec must be an AttributeSpec (names + num_classes), got {type(spec).__name__}")


@dataclass
class MSRAExplanation:
    """What MSRA looked at for a batch (from :meth:`MSRA.explain`); absent parts are ``None`` / empty.

    attribute_masks: (B, K, h, w) ARM masks M_k (Eq. 1), on the attribute branch's grid.
    attribute_probabilities: K tensors (B, C_k), softmax of each attribute classifier.
    attribute_predictions: (B, K) int64, the most probable class per attribute.
    attribute_names: the K names in order.
    attribute_adjacency: (B, K, K) D^-1/2 S_a D^-1/2 (Eq. 2).
    intra_attention: level ("j1", "j2", "j3") -> (B, n, n) S of Eq. 4 (rows sum to 1 over present nodes).
    cross_dependency: "j1->j2" / "j2->j3" -> (B, n_v, n_v+1) S~ of the last CLG layer.
    node_positions: level -> (B, n, 2) [x, y] in input pixels (-1 where absent).
    node_presence: level -> (B, n) bool.
    node_names: level -> node names.
    heatmaps: level -> (B, n, h, w) node heat maps on the global branch's grid.
    gate: (B, pose_dim) FEM gate sigmoid(...) of Eq. 9.
    features: (B, D) the retrieval feature.
    """

    attribute_masks: torch.Tensor | None = None
    attribute_probabilities: list[torch.Tensor] = field(default_factory=list)
    attribute_predictions: torch.Tensor | None = None
    attribute_names: tuple[str, ...] = ()
    attribute_adjacency: torch.Tensor | None = None
    intra_attention: dict[str, torch.Tensor] = field(default_factory=dict)
    cross_dependency: dict[str, torch.Tensor] = field(default_factory=dict)
    node_positions: dict[str, torch.Tensor] = field(default_factory=dict)
    node_presence: dict[str, torch.Tensor] = field(default_factory=dict)
    node_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    heatmaps: dict[str, torch.Tensor] = field(default_factory=dict)
    gate: torch.Tensor | None = None
    features: torch.Tensor | None = None


class MSRA(nn.Module):
    """MSRA (Sec. 2, Fig. 1): global branch + ARM + Pose Pyramid + FEM. See the module docstring.

    ``attribute_spec``: the dataset's AttributeSpec (required with ``use_arm``); ``levels`` /
    ``theta``: Table 2's CLG settings; ``lam``: lambda of Eq. 8; ``input_size``: the declared
    (H, W) (keypoints are read in pixels of the images actually given); ``pose_source``: a
    :class:`~reidlab.models.heatmaps.PoseSource` (default: the batch's keypoints).
    """

    def __init__(
        self,
        num_classes: int,
        attribute_spec: AttributeSpec | dict | None = None,
        depth: int = 50,
        pretrained: bool | str = True,
        input_size: tuple[int, int] = (256, 128),
        levels: tuple[str, ...] = ("j1", "j2", "j3"),
        theta: int = 1,
        lam: float = 0.6,
        use_arm: bool = True,
        use_pose: bool = True,
        pose_dim: int = 512,
        attribute_node_dim: int = 256,
        global_last_stride: int = 2,
        paper_width: bool = False,
        attribute_reduction: str = "mean",
        heatmap_sigma: float = 1.0,
        pose_source: PoseSource | None = None,
        triplet_margin: float = 0.3,
        attribute_weight: float = ATTRIBUTE_WEIGHT,
        global_weight: float = GLOBAL_WEIGHT,
        fusion_weight: float = FUSION_WEIGHT,
    ):
        super().__init__()
        attribute_spec = _as_attribute_spec(attribute_spec)
        if use_arm and (attribute_spec is None or len(attribute_spec) == 0):
            raise ValueError(
                "MSRA: attribute_spec is missing: the attribute relation mining module (ARM) needs the "
                "dataset's attributes (AttributeSpec names + num_classes, e.g. split.attribute_spec). "
                "Use a dataset with attribute labels, or use_arm=False."
            )
        if attribute_reduction not in ("mean", "sum"):
            raise ValueError(f"MSRA: attribute_reduction must be 'mean' or 'sum', got {attribute_reduction!r}")
        if global_last_stride not in (1, 2):
            raise ValueError(f"MSRA: global_last_stride must be 1 or 2, got {global_last_stride}")
        stride = 16 * global_last_stride
        if input_size[0] < stride or input_size[1] < stride:
            raise ValueError(
                f"MSRA: input_size {tuple(input_size)} is too small: the global branch's map would have "
                f"{input_size[0] // stride} x {input_size[1] // stride} cells (stride {stride}); use at least "
                f"{stride} x {stride} pixels (the paper uses 256 x 128)"
            )
        self.attribute_spec = attribute_spec if use_arm else None
        self.use_arm, self.use_pose = use_arm, use_pose
        self.input_size = tuple(input_size)
        self.num_classes = num_classes

        self.global_last_stride = global_last_stride
        backbone = ResNetBackbone(depth, last_stride=global_last_stride, pretrained=pretrained)
        self.stem = backbone.stem
        self.layer1, self.layer2, self.layer3 = backbone.layer1, backbone.layer2, backbone.layer3  # shared
        self.global_layer4 = backbone.layer4  # F_g
        channels = backbone.out_channels
        self.feature_dim_global = channels
        if paper_width:  # F_pose, F'_a and F_fuse as wide as F_g: F_out = 2 x 2048 = 4096-d with ResNet-50
            pose_dim = channels
        self.pose_dim = pose_dim

        fused_dim = 0
        if use_arm:
            self.attribute_layer4 = copy_stage(backbone.layer4, stride=1)  # F_a: no last down-sampling
            self.arm = AttributeRelationMining(channels, attribute_spec.num_classes, node_dim=attribute_node_dim,
                                               out_dim=pose_dim)
            fused_dim = pose_dim
        if use_pose:
            self.pose_source = pose_source if pose_source is not None else DatasetKeypoints()
            self.pose_pyramid = PosePyramid(channels, pose_dim, levels, theta, lam, heatmap_sigma)
            fused_dim = pose_dim
        if use_arm and use_pose:
            self.fem = FeatureEnhancement(pose_dim, pose_dim)
        self.feature_dim = fused_dim + channels
        self.neck = BNNeck(self.feature_dim, num_classes)

        terms = [
            LossTerm("triplet", "triplet", global_weight, {"margin": triplet_margin}, name="triplet(F_g)"),
            LossTerm("id", "logits", fusion_weight, name="id(F_out)"),
        ]
        if use_arm:
            # attribute_loss averages over the K attributes; "sum" reads the paper's "total loss of K
            # attributes" literally (x K: with Market's 27 attributes, 27 times the weight).
            if attribute_reduction == "sum":
                attribute_weight = attribute_weight * len(attribute_spec)
            terms.append(LossTerm("attribute", "attribute_logits", attribute_weight,
                                  {"num_classes": tuple(attribute_spec.num_classes)}, name="attributes"))
        self.loss_terms = tuple(terms)
        self.requires = {"keypoints"} if use_pose else set()

    def _branches(self, images: torch.Tensor, keypoints: torch.Tensor | None):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"MSRA: images must be (B, 3, H, W), got {tuple(images.shape)}")
        stride = 16 * self.global_last_stride
        if images.shape[-2] < stride or images.shape[-1] < stride:
            raise ValueError(
                f"MSRA: images of {tuple(images.shape[-2:])} pixels are too small: the heat maps and parts would "
                f"have zero rows or columns (stride {stride}); use at least {stride} x {stride}"
            )
        shared = self.layer3(self.layer2(self.layer1(self.stem(images))))  # (B, C3, H/16, W/16)
        global_map = self.global_layer4(shared)  # (B, C, h, w)
        global_feature = global_map.mean(dim=(2, 3))  # (B, C)  F_g (GAP)
        arm = self.arm(self.attribute_layer4(shared)) if self.use_arm else None
        pose = None
        if self.use_pose:
            if keypoints is None and isinstance(self.pose_source, DatasetKeypoints):
                raise ValueError(
                    "MSRA: keypoints are missing. The Pose Pyramid needs keypoints (B, 17, 3) in input pixels "
                    "(batch['keypoints'], model.requires = {'keypoints'}); use a dataset with keypoints, "
                    "a pose_source estimator, or use_pose=False."
                )
            points = self.pose_source(images, keypoints)  # (B, 17, 3)
            pose = self.pose_pyramid(global_map, points, tuple(images.shape[-2:]))
        gate = None
        if arm is not None and pose is not None:
            fused, gate = self.fem(pose.features, arm.features)  # (B, d)  Eq. 9
        elif pose is not None:
            fused = pose.features  # (B, d)
        elif arm is not None:
            fused = arm.features  # (B, d)
        else:
            fused = None
        fused_out = global_feature if fused is None else torch.cat([fused, global_feature], dim=1)  # (B, D) F_out
        return global_feature, fused_out, arm, pose, gate

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        global_feature, fused_out, arm, _, _ = self._branches(images, keypoints)
        neck_feature, logits = self.neck(fused_out)  # (B, D), (B, num_classes)
        if not self.training:
            return {"features": neck_feature}
        outputs = {"features": neck_feature, "logits": [logits], "triplet": [global_feature]}
        if arm is not None:
            outputs["attribute_logits"] = arm.attribute_logits  # K x (B, C_k)
        return outputs

    @torch.no_grad()
    def explain(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> MSRAExplanation:
        """Run in eval mode and return the intermediate maps (see :class:`MSRAExplanation`)."""
        with eval_mode(self):
            _, fused_out, arm, pose, gate = self._branches(images, keypoints)
            neck_feature, _ = self.neck(fused_out)
        out = MSRAExplanation(gate=gate, features=neck_feature)
        if arm is not None:
            probabilities = [logit.softmax(dim=-1) for logit in arm.attribute_logits]
            out.attribute_masks = arm.masks
            out.attribute_probabilities = probabilities
            out.attribute_predictions = torch.stack([p.argmax(dim=-1) for p in probabilities], dim=1)  # (B, K)
            out.attribute_names = tuple(self.attribute_spec.names)
            out.attribute_adjacency = arm.adjacency
        if pose is not None:
            out.intra_attention = pose.attention
            out.cross_dependency = pose.dependency
            out.node_positions = pose.positions
            out.node_presence = pose.presence
            out.node_names = {level: LEVEL_NAMES[level] for level in pose.presence}
            out.heatmaps = pose.heatmaps
        return out


@register_model("msra")
def build_msra(num_classes: int, attribute_spec: AttributeSpec | dict | None = None, **cfg) -> MSRA:
    """``build_model("msra", num_classes=751, attribute_spec=split.attribute_spec, depth=50, levels=..., theta=1, lam=0.6)``."""
    return MSRA(num_classes, attribute_spec, **cfg)
