"""Pose Pyramid with intra-layer graph attention and cross-layer graph convolution (MSRA Sec. 2.3, Eq. 3-8).

Three levels of body nodes: j1 = the 17 COCO keypoints, j2 = 10 parts, j3 = 5 regions
(:data:`LEVEL_NAMES`, fixed membership matrices :data:`MEMBERSHIP_J2` ``(10, 17)`` and
:data:`MEMBERSHIP_J3` ``(5, 10)``). Node features are the feature map pooled with each
node's heat map; a graph attention layer updates each level (Eq. 3-4); the cross-layer
graph convolution CLG (Eq. 5-7) lets each finer level absorb its coarser level; Eq. 8
sums them into F_pose.

Choices (the paper leaves them open):
- groupings: j2 = head, L/R upper arm, L/R forearm, torso, L/R thigh, L/R shank (elbows
  and knees belong to both of their limb segments); j3 = head, torso, arms, thighs,
  shanks (a partition of j2, mirror-symmetric). A group's heat map is the max of its
  members' maps (their union); it is present when any member is.
- node features are heat-map-weighted averages, sum(F*H)/sum(H); absent nodes (all
  members missing) are 0 and masked out of every softmax and average, so no NaN can
  arise however many points are missing.
- sigma in Eq. 3 is ReLU; LeakyReLU slope 0.2 (GAT's); the CLG embedding functions are
  Linear + LayerNorm + ReLU (LayerNorm because node sets are masked, BatchNorm would
  mix absent zeros into its statistics); the sum of Eq. 5 runs over present nodes.
- dependency S~_{v,v+1} = softmax over the coarser nodes of V^v (V^{v+1})^T / sqrt(d)
  ``(n_v, n_{v+1})`` (the scale keeps the softmax from saturating). Eq. 7 as printed,
  S~ r^v W, does not type-check with S~ in R^{n_v x n_{v+1}}; we use
  R~_{v,v+1} = alpha * S~_{v,v+1} R~^{v+1} W_{v,v+1} (n_v x c): each finer node absorbs
  its coarser parts ("coarse to fine"), alpha a learnable scalar (init 1).
- Eq. 8 mixes 17- and 10-node terms: R~_{2,3} is lifted to the 17 nodes through
  S~_{1,2}, then F_pose = mean over present j1 nodes of R~_1 + lam * (R~_{1,2} + S~_{1,2} R~_{2,3}).
- levels ("j1",) (Table 2's CLG-j1) pairs j1 with itself: Eq. 5-7 with v = v+1 = 1, a
  17 x 17 dependency S~_{1,1} and F_pose = R~_1 + lam R~_{1,1}. Read otherwise (no CLG for
  one level), theta = 1 and 2 would build the same network, yet Table 2 reports different
  figures for them. theta stacks CLG layers, each adding its
  cross-layer messages to the finer levels' features (X_v <- X_v + R~_{v,v+1}) before the
  next; Eq. 8 takes the last layer's messages and dependency matrices.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlab.data.records import COCO17_FLIP_PAIRS, COCO17_NAMES
from reidlab.models.heatmaps import keypoint_heatmaps

J2_GROUPS: dict[str, tuple[str, ...]] = {
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "left_upper_arm": ("left_shoulder", "left_elbow"),
    "right_upper_arm": ("right_shoulder", "right_elbow"),
    "left_forearm": ("left_elbow", "left_wrist"),
    "right_forearm": ("right_elbow", "right_wrist"),
    "torso": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    "left_thigh": ("left_hip", "left_knee"),
    "right_thigh": ("right_hip", "right_knee"),
    "left_shank": ("left_knee", "left_ankle"),
    "right_shank": ("right_knee", "right_ankle"),
}
J3_GROUPS: dict[str, tuple[str, ...]] = {  # members are j2 nodes
    "head": ("head",),
    "torso": ("torso",),
    "arms": ("left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm"),
    "thighs": ("left_thigh", "right_thigh"),
    "shanks": ("left_shank", "right_shank"),
}
LEVEL_NAMES: dict[str, tuple[str, ...]] = {"j1": COCO17_NAMES, "j2": tuple(J2_GROUPS), "j3": tuple(J3_GROUPS)}


def _membership(groups: dict[str, tuple[str, ...]], members: tuple[str, ...]) -> torch.Tensor:
    matrix = torch.zeros(len(groups), len(members))
    for g, names in enumerate(groups.values()):
        for name in names:
            matrix[g, members.index(name)] = 1.0
    return matrix


MEMBERSHIP_J2 = _membership(J2_GROUPS, COCO17_NAMES)  # (10, 17)
MEMBERSHIP_J3 = _membership(J3_GROUPS, LEVEL_NAMES["j2"])  # (5, 10)


def membership_to_keypoints(level: str) -> torch.Tensor:
    """``(n_level, 17)`` 0/1: which COCO keypoints make up each node of ``level``."""
    if level == "j1":
        return torch.eye(len(COCO17_NAMES))
    if level == "j2":
        return MEMBERSHIP_J2.clone()
    if level == "j3":
        return (MEMBERSHIP_J3 @ MEMBERSHIP_J2 > 0).float()
    raise ValueError(f"unknown pose level {level!r}; use 'j1', 'j2' or 'j3'")


def flip_permutation(level: str) -> list[int]:
    """Node order after a horizontal flip with left/right swapped (mirrored node assignment)."""
    names = LEVEL_NAMES[level]
    perm = list(range(len(names)))
    if level == "j1":
        for a, b in COCO17_FLIP_PAIRS:
            perm[a], perm[b] = b, a
        return perm
    for i, name in enumerate(names):
        mirrored = name.replace("left_", "@").replace("right_", "left_").replace("@", "right_")
        perm[i] = names.index(mirrored)
    return perm


def masked_softmax(scores: torch.Tensor, key_mask: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis restricted to ``key_mask``; rows with no key or an absent query are 0.

    ``scores`` (B, n, m), ``key_mask`` (B, m) bool, ``query_mask`` (B, n) bool. Never NaN.
    """
    scores = scores.masked_fill(~key_mask[:, None, :], torch.finfo(scores.dtype).min)  # (B, n, m)
    weights = torch.softmax(scores, dim=-1) * key_mask[:, None, :].to(scores.dtype)  # (B, n, m)
    if query_mask is not None:
        weights = weights * query_mask[:, :, None].to(scores.dtype)  # (B, n, m)
    return weights


def pool_nodes(feature_map: torch.Tensor, heatmaps: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Heat-map-weighted average of the feature map per node: ``(B, n, C)``; absent nodes are 0."""
    weight = heatmaps.sum(dim=(-2, -1))  # (B, n)
    pooled = torch.einsum("bchw,bnhw->bnc", feature_map, heatmaps)  # (B, n, C)
    pooled = pooled / weight.clamp_min(1e-6)[..., None]  # (B, n, C)
    return pooled * present[..., None].to(pooled.dtype)  # (B, n, C)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """The paper's embedding function: a fully connected layer, a normalisation layer and a ReLU."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU(inplace=True))


class IntraLayerGAT(nn.Module):
    """Graph attention within one pyramid level, MSRA Eq. 3-4.

    S_pq = softmax_q LeakyReLU(W7^T [W6 r_p || W6 r_q]);  r_p <- ReLU(sum_q S_pq W5 r_q),
    the softmax over present nodes only; absent nodes give 0 rows and 0 outputs.
    """

    def __init__(self, dim: int, negative_slope: float = 0.2):
        super().__init__()
        self.w5 = nn.Linear(dim, dim, bias=False)
        self.w6 = nn.Linear(dim, dim, bias=False)
        self.w7 = nn.Linear(2 * dim, 1, bias=False)
        self.negative_slope = negative_slope

    def attention(self, nodes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        projected = self.w6(nodes)  # (B, n, d)
        a_src, a_dst = self.w7.weight[0].chunk(2)  # W7^T [x || y] = a_src.x + a_dst.y
        scores = (projected @ a_src)[:, :, None] + (projected @ a_dst)[:, None, :]  # (B, n, n)
        scores = F.leaky_relu(scores, self.negative_slope)  # (B, n, n)
        return masked_softmax(scores, present, present)  # (B, n, n)  Eq. 4

    def forward(self, nodes: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = self.attention(nodes, present)  # (B, n, n)
        updated = F.relu(attention @ self.w5(nodes))  # (B, n, d)  Eq. 3
        return updated * present[..., None].to(updated.dtype), attention


class NodeRelationEmbedding(nn.Module):
    """V = delta([r_p, sum_q f1([omega(r_p), sigma(r_q - r_p)])]), MSRA Eq. 5-6 (sum over present q)."""

    def __init__(self, dim: int):
        super().__init__()
        self.omega, self.sigma = _mlp(dim, dim), _mlp(dim, dim)
        self.f1, self.delta = _mlp(2 * dim, dim), _mlp(2 * dim, dim)

    def forward(self, nodes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # Same maths as f1(cat[omega(r_p), sigma(r_q - r_p)]), computed without n^2 copies of the
        # linear parts: Linear(r_q - r_p) = W r_q - W r_p + b, Linear(cat[a, b]) = W_a a + W_b b + bias.
        sigma_linear, sigma_norm, _ = self.sigma
        f1_linear, f1_norm, _ = self.f1
        projected = F.linear(nodes, sigma_linear.weight)  # (B, n, d)
        difference = projected[:, None, :, :] - projected[:, :, None, :] + sigma_linear.bias  # (B, n_p, n_q, d)
        difference = F.relu(sigma_norm(difference))  # (B, n_p, n_q, d)  sigma(r_q - r_p)
        d = self.omega[0].out_features
        own = F.linear(self.omega(nodes), f1_linear.weight[:, :d], f1_linear.bias)  # (B, n_p, d)
        messages = F.relu(f1_norm(own[:, :, None, :] + F.linear(difference, f1_linear.weight[:, d:])))  # (B, n_p, n_q, d)
        aggregated = (messages * present[:, None, :, None].to(messages.dtype)).sum(dim=2)  # (B, n_p, d)  Eq. 5
        return self.delta(torch.cat([nodes, aggregated], dim=-1))  # (B, n, d)  Eq. 6

    def reference(self, nodes: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Eq. 5-6 written literally (n^2 concatenations); for tests."""
        n = nodes.shape[1]
        own = self.omega(nodes)[:, :, None, :].expand(-1, -1, n, -1)  # (B, n_p, n_q, d)
        difference = self.sigma(nodes[:, None, :, :] - nodes[:, :, None, :])  # (B, n_p, n_q, d): r_q - r_p
        messages = self.f1(torch.cat([own, difference], dim=-1))  # (B, n_p, n_q, d)
        aggregated = (messages * present[:, None, :, None].to(messages.dtype)).sum(dim=2)  # (B, n_p, d)
        return self.delta(torch.cat([nodes, aggregated], dim=-1))  # (B, n, d)


class CrossLayerGraphConv(nn.Module):
    """One CLG layer over the active levels, MSRA Eq. 5-7.

    For each adjacent pair (v, v+1): S~ = masked softmax_{v+1}(V^v (V^{v+1})^T / sqrt(d)) and
    the message R~_{v,v+1} = alpha * S~ X^{v+1} W_{v,v+1}, living on the n_v finer nodes.
    """

    def __init__(self, dim: int, num_levels: int):
        super().__init__()
        # One level (CLG-j1): the level is paired with itself, S~_{1,1} over the 17 nodes.
        self.pairs = [(v, v + 1) for v in range(num_levels - 1)] if num_levels > 1 else [(0, 0)]
        self.embeddings = nn.ModuleList(NodeRelationEmbedding(dim) for _ in range(num_levels))
        self.weights = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in self.pairs)  # W_{v,v+1}
        self.alphas = nn.Parameter(torch.ones(len(self.pairs)))  # alpha
        self.dim = dim

    def forward(self, levels: list[torch.Tensor], presence: list[torch.Tensor]):
        embedded = [emb(x, p) for emb, x, p in zip(self.embeddings, levels, presence)]  # each (B, n_v, d)
        messages, dependencies = [], []
        for index, (v, u) in enumerate(self.pairs):
            scores = embedded[v] @ embedded[u].transpose(1, 2) / math.sqrt(self.dim)  # (B, n_v, n_u)
            dependency = masked_softmax(scores, presence[u], presence[v])  # (B, n_v, n_u)
            message = self.alphas[index] * (dependency @ self.weights[index](levels[u]))  # (B, n_v, d)  Eq. 7
            messages.append(message)
            dependencies.append(dependency)
        return messages, dependencies


@dataclass
class PoseOutput:
    features: torch.Tensor  # (B, d) F_pose (Eq. 8)
    node_features: dict[str, torch.Tensor]  # level -> (B, n, d) R~ after intra-layer attention
    presence: dict[str, torch.Tensor]  # level -> (B, n) bool
    attention: dict[str, torch.Tensor]  # level -> (B, n, n) intra-layer S (Eq. 4)
    dependency: dict[str, torch.Tensor]  # "j1->j2" -> (B, n_v, n_v+1) last CLG layer's S~
    positions: dict[str, torch.Tensor]  # level -> (B, n, 2) [x, y] in input pixels, -1 when absent
    heatmaps: dict[str, torch.Tensor] = field(default_factory=dict)  # level -> (B, n, h, w)


class PosePyramid(nn.Module):
    """MSRA Sec. 2.3: node pooling from heat maps, Eq. 3-4 per level, ``theta`` CLG layers (Eq. 5-7), Eq. 8.

    ``levels`` is ("j1",), ("j1", "j2") or ("j1", "j2", "j3") (Table 2's CLG-j1, -j1j2, -j1j2j3).
    ``dim`` (None = in_channels) adds a 1x1 conv reduction first, to keep the graph layers small.
    """

    def __init__(self, in_channels: int, dim: int | None = None, levels=("j1", "j2", "j3"), theta: int = 1,
                 lam: float = 0.6, sigma: float = 1.0):
        super().__init__()
        levels = tuple(levels)
        allowed = [("j1",), ("j1", "j2"), ("j1", "j2", "j3")]
        if levels not in allowed:
            raise ValueError(f"PosePyramid: levels must be one of {allowed}, got {levels}")
        if theta < 1:
            raise ValueError(f"PosePyramid: theta (number of CLG layers) must be >= 1, got {theta}")
        self.levels, self.theta, self.lam, self.sigma = levels, theta, float(lam), sigma
        dim = dim or in_channels
        self.dim = dim
        self.reduce = (
            nn.Identity() if dim == in_channels
            else nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
        )
        for level in levels:
            self.register_buffer(f"membership_{level}", membership_to_keypoints(level), persistent=False)
        self.intra = nn.ModuleDict({level: IntraLayerGAT(dim) for level in levels})
        self.clg = nn.ModuleList(CrossLayerGraphConv(dim, len(levels)) for _ in range(theta))

    def level_inputs(self, keypoints: torch.Tensor, input_size: tuple[int, int], feature_size: tuple[int, int]):
        """Per level: heat maps (B, n, h, w), presence (B, n) and node positions (B, n, 2) in input pixels."""
        heat, present = keypoint_heatmaps(keypoints, input_size, feature_size, self.sigma)  # (B, 17, h, w), (B, 17)
        coords = torch.where(present[..., None], keypoints[..., :2], torch.zeros_like(keypoints[..., :2]))  # (B, 17, 2)
        out = {}
        for level in self.levels:
            member = getattr(self, f"membership_{level}").to(heat.dtype)  # (n, 17)
            level_heat = (heat[:, None] * member[None, :, :, None, None]).amax(dim=2)  # (B, n, h, w)
            counts = present.to(heat.dtype) @ member.T  # (B, n) present members per node
            level_present = counts > 0  # (B, n)
            positions = (coords.transpose(1, 2) @ member.T).transpose(1, 2) / counts.clamp_min(1)[..., None]  # (B, n, 2)
            positions = torch.where(level_present[..., None], positions, torch.full_like(positions, -1.0))
            out[level] = (level_heat, level_present, positions)
        return out

    def forward(self, feature_map: torch.Tensor, keypoints: torch.Tensor, input_size: tuple[int, int]) -> PoseOutput:
        feature_map = self.reduce(feature_map)  # (B, d, h, w)
        inputs = self.level_inputs(keypoints.float(), input_size, tuple(feature_map.shape[-2:]))  # heat maps in float32
        node_features, presence, attention, positions, heatmaps = {}, {}, {}, {}, {}
        for level in self.levels:
            level_heat, level_present, level_positions = inputs[level]
            nodes = pool_nodes(feature_map, level_heat, level_present)  # (B, n, d)
            node_features[level], attention[level] = self.intra[level](nodes, level_present)  # Eq. 3-4
            presence[level], positions[level], heatmaps[level] = level_present, level_positions, level_heat

        per_node = node_features["j1"]  # (B, 17, d)  R~_1
        dependency = {}
        if self.clg:
            states = [node_features[level] for level in self.levels]
            masks = [presence[level] for level in self.levels]
            for layer in self.clg:  # theta stacked CLG layers
                messages, dependencies = layer(states, masks)
                if len(states) == 1:  # CLG-j1: the level absorbs its own message
                    states = [states[0] + messages[0]]
                else:
                    states = [s + m for s, m in zip(states[:-1], messages)] + [states[-1]]
            cross = messages[0]  # (B, 17, d)  R~_{1,2}
            if len(messages) > 1:
                cross = cross + dependencies[0] @ messages[1]  # (B, 17, d)  R~_{2,3} lifted via S~_{1,2}
            per_node = per_node + self.lam * cross  # (B, 17, d)  Eq. 8 per node
            pairs = list(zip(self.levels[:-1], self.levels[1:])) or [("j1", "j1")]
            dependency = {f"{a}->{b}": d for (a, b), d in zip(pairs, dependencies)}
        present = presence["j1"].to(per_node.dtype)  # (B, 17)
        features = (per_node * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp_min(1)  # (B, d)
        return PoseOutput(features, node_features, presence, attention, dependency, positions, heatmaps)
