"""Adaptive adjustment based on human Body Structure (AABS), MBGN Sec. 3.2, Algorithm 1.

Index convention (used everywhere here): a feature map has rows ``0 .. H-1``;
split plane ``l_i`` is the index of the first row *below* it, so part
``p_0 = rows [0, l_0)``, ``p_i = rows [l_{i-1}, l_i)`` and ``p_n = rows [l_{n-1}, H)``
(Algorithm 1 lines 5-9). Around plane ``l_i`` Algorithm 1 (line 16) looks at row
``l_i - 1`` (j = 0, the last row of the part above, ``p_i``) and row ``l_i``
(j = 1, the first row of the part below, ``p_{i+1}``), and compares each with
``GAP(p_i)`` and ``GAP(p_{i+1})`` by cosine similarity (lines 19-20):

- both rows more similar to the part below -> ``l_i <- l_i - 1`` (plane up; line 22);
- both rows more similar to the part above -> ``l_i <- l_i + 1`` (plane down; line 24);
- otherwise the plane stays.

Planes are updated one after another within a repetition (plane i sees the
already moved plane i-1, as the in-place ``for i`` loop of lines 13-28 does).
As printed, lines 10-11 (``L' <- L; while L' != L``) never enter the loop; we read
them as "repeat until no plane moves", bounded by H repetitions. A move that
would empty a part is not made, so planes stay strictly ordered and every part
keeps at least one row. Planes are integers found without gradient; pooling the
parts they define (:func:`pool_regions`) is differentiable.

Part means: Algorithm 1 computes ``f_i = GAP(p_i)`` once, in lines 5-9, from the
*initial* planes, and the loop of lines 10-28 never recomputes them. Read literally,
a plane is compared with the parts it started between, however far it has moved.
We recompute both parts' means from the current planes at every comparison (the
default: a plane that moved is judged by the parts it now separates, which is what
"adjusts each segmentation plane ... based on the cosine similarity between the pixel
plane ... and the local feature map" in Sec. 3.2 describes). ``fixed_part_means=True``
gives the literal reading; the two differ on about 15% of random maps.

Batched over images: row means and their prefix sums give any part's mean in
O(1) per image; the only Python loops run over planes and repetitions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# Sec. 3.1: the map bisected, the upper half trisected, the lower half bisected.
BODY_RATIO: tuple[float, ...] = (1.0, 1.0, 1.0, 1.5, 1.5)


def initial_planes(height: int, ratio: Sequence[float] = BODY_RATIO) -> list[int]:
    """Algorithm 1 lines 1-4: ``l_i = H * sum_{j<=i} r_j / sum_j r_j``, rounded to whole rows.

    Rounding is half-up; where rounding (on small maps) would leave a part empty the
    planes are pushed apart so that every part has at least one row.
    """
    ratio = [float(r) for r in ratio]
    if len(ratio) < 2 or any(r <= 0 for r in ratio):
        raise ValueError(f"AABS ratio must have at least two positive entries, got {ratio}")
    n = len(ratio) - 1
    if height < n + 1:
        raise ValueError(f"AABS: a map of height {height} cannot hold {n + 1} parts of at least one row")
    total = sum(ratio)
    planes, cumulative = [], 0.0
    for i in range(n):
        cumulative += ratio[i]
        plane = int(height * cumulative / total + 0.5)
        planes.append(min(max(plane, i + 1), height - (n - i)))
    for i in range(1, n):  # strictly increasing: every part at least one row
        planes[i] = max(planes[i], planes[i - 1] + 1)
    return planes


@dataclass
class AABSResult:
    """AABS output. ``initial`` and ``planes``: ``(B, n)`` int64 split planes (see the module
    docstring for the index convention); ``trace``: ``(T + 1, B, n)``, the initial planes and the
    planes after every repetition that moved a plane (None unless asked); ``iterations``: T."""

    initial: torch.Tensor
    planes: torch.Tensor
    trace: torch.Tensor | None
    iterations: int


def _gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[b, index[b]]`` for ``table (B, R, C)``, ``index (B,)`` -> ``(B, C)``."""
    B, _, C = table.shape
    return table.gather(1, index.view(B, 1, 1).expand(B, 1, C)).squeeze(1)  # (B, C)


@torch.no_grad()
def adjust_split_planes(
    feature: torch.Tensor,
    ratio: Sequence[float] = BODY_RATIO,
    max_iters: int | None = None,
    return_trace: bool = False,
    fixed_part_means: bool = False,
) -> AABSResult:
    """Algorithm 1 on a batch of feature maps ``(B, C, H, W)``; returns the adjusted planes.

    ``fixed_part_means=True``: lines 5-9 literally, ``GAP(p_i)`` of the initial parts throughout
    (module docstring); default: the parts' means from the current planes.
    """
    if feature.dim() != 4:
        raise ValueError(f"AABS expects a (B, C, H, W) feature map, got shape {tuple(feature.shape)}")
    B, C, H, W = feature.shape
    n = len(ratio) - 1
    device = feature.device
    rows = feature.detach().float().mean(dim=3).transpose(1, 2)  # (B, H, C)  GAP of each one-row plane
    prefix = F.pad(rows.cumsum(dim=1), (0, 0, 1, 0))  # (B, H+1, C)  prefix[:, k] = sum of rows < k
    init = torch.tensor(initial_planes(H, ratio), dtype=torch.long, device=device)
    init = init.unsqueeze(0).expand(B, n).contiguous()  # (B, n)
    planes = init.clone()
    zeros = torch.zeros(B, dtype=torch.long, device=device)
    full = torch.full((B,), H, dtype=torch.long, device=device)

    def part_mean(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:  # rows [start, end) -> (B, C)
        total = _gather_rows(prefix, end) - _gather_rows(prefix, start)  # (B, C)
        return total / (end - start).clamp(min=1).unsqueeze(1).to(total.dtype)

    fixed_means = None
    if fixed_part_means:  # lines 5-9: GAP of each initial part, (B, n+1, C), never updated
        starts, ends = plane_bounds(init, H)  # (B, n+1) each
        fixed_means = torch.stack([part_mean(starts[:, k], ends[:, k]) for k in range(n + 1)], dim=1)

    trace = [planes.clone()] if return_trace else None
    iterations = 0
    for _ in range(H if max_iters is None else max_iters):
        before = planes.clone()
        for i in range(n):
            top = planes[:, i - 1] if i > 0 else zeros  # first row of p_i
            bottom = planes[:, i + 1] if i < n - 1 else full  # end of p_{i+1}
            plane = planes[:, i]
            if fixed_means is None:
                f_above = part_mean(top, plane)  # f_i = GAP(p_i)
                f_below = part_mean(plane, bottom)  # f_{i+1} = GAP(p_{i+1})
            else:
                f_above, f_below = fixed_means[:, i], fixed_means[:, i + 1]  # (B, C) each
            row_above = _gather_rows(rows, plane - 1)  # f'_{i0}: row l_i - 1
            row_below = _gather_rows(rows, plane)  # f'_{i1}: row l_i
            s0_above = F.cosine_similarity(row_above, f_above, dim=1)
            s0_below = F.cosine_similarity(row_above, f_below, dim=1)
            s1_above = F.cosine_similarity(row_below, f_above, dim=1)
            s1_below = F.cosine_similarity(row_below, f_below, dim=1)
            up = (s0_above < s0_below) & (s1_above < s1_below) & (plane - 1 > top)  # line 21-22
            down = (s0_above > s0_below) & (s1_above > s1_below) & (plane + 1 < bottom)  # line 23-24
            planes[:, i] = plane - up.long() + down.long()
        if torch.equal(planes, before):
            break
        iterations += 1
        if trace is not None:
            trace.append(planes.clone())
    return AABSResult(init, planes, torch.stack(trace) if trace is not None else None, iterations)


class AABS(nn.Module):
    """AABS, MBGN Algorithm 1, as a (parameter-free) module: ``forward(feature) -> AABSResult``.

    ``ratio``: the body-structure ratio R (default 1:1:1:1.5:1.5 for B1..B5).
    ``enabled=False`` returns the initial (ratio) planes unchanged: the average or
    pre-defined segmentation that AABS replaces, for the ablation rows.
    ``fixed_part_means=True``: Algorithm 1 lines 5-9 literally (see the module docstring).
    """

    def __init__(self, ratio: Sequence[float] = BODY_RATIO, enabled: bool = True, max_iters: int | None = None,
                 fixed_part_means: bool = False):
        super().__init__()
        self.fixed_part_means = fixed_part_means
        initial_planes(len(ratio), ratio)  # validates the ratio
        self.ratio = tuple(float(r) for r in ratio)
        self.enabled = enabled
        self.max_iters = max_iters

    @property
    def num_parts(self) -> int:
        return len(self.ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, enabled={self.enabled}, fixed_part_means={self.fixed_part_means}"

    def forward(self, feature: torch.Tensor, return_trace: bool = False) -> AABSResult:
        return adjust_split_planes(feature, self.ratio, self.max_iters if self.enabled else 0, return_trace,
                                   self.fixed_part_means)


def plane_bounds(planes: torch.Tensor, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split planes ``(B, n)`` -> first row and end row (exclusive) of each part, ``(B, n+1)`` each."""
    B = planes.shape[0]
    zeros = planes.new_zeros(B, 1)
    full = planes.new_full((B, 1), height)
    return torch.cat([zeros, planes], dim=1), torch.cat([planes, full], dim=1)  # (B, P), (B, P)


def pool_regions(feature: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, mode: str = "avg") -> torch.Tensor:
    """Pool the row ranges ``[starts, ends)`` (``(B, R)`` each) of ``feature (B, C, H, W)`` -> ``(B, R, C)``.

    Differentiable in ``feature``; the ranges are integer and carry no gradient.
    ``mode``: ``"avg"`` (mean over the rows and columns of the range) or ``"max"``.
    """
    B, C, H, W = feature.shape
    rows = torch.arange(H, device=feature.device)
    mask = (rows >= starts.unsqueeze(-1)) & (rows < ends.unsqueeze(-1))  # (B, R, H)
    if mode == "avg":
        weights = mask.to(feature.dtype) / mask.sum(-1, keepdim=True).clamp(min=1).to(feature.dtype)  # (B, R, H)
        return torch.einsum("brh,bch->brc", weights, feature.mean(dim=3))  # (B, R, C)
    if mode == "max":
        row_max = feature.amax(dim=3).unsqueeze(1)  # (B, 1, C, H)
        masked = row_max.masked_fill(~mask.unsqueeze(2), float("-inf"))  # (B, R, C, H)
        return masked.amax(dim=3)  # (B, R, C)
    raise ValueError(f"pool_regions: mode must be 'avg' or 'max', got {mode!r}")
