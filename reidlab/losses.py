"""Losses: identity cross-entropy (MBGN Eq. 9), batch-hard triplet (MBGN Eq. 10),
attribute losses (MSRA Sec. 3.1), and the declared total loss of a model (MBGN Eq. 8).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossTerm:
    """One term of a model's total loss: ``weight * kind(outputs[output], batch)``.

    ``kind`` is ``"id"`` (cross-entropy against ``batch["pid"]``), ``"triplet"``
    (batch-hard against ``batch["pid"]``) or ``"attribute"`` (against
    ``batch["attributes"]``). ``outputs[output]`` is a list of tensors; the term is
    the mean over that list. ``options`` go to the loss (``margin``, ``soft_margin``,
    ``label_smoothing``, ``num_classes`` per attribute, ...).
    """

    kind: str
    output: str
    weight: float = 1.0
    options: dict = field(default_factory=dict)
    name: str | None = None  # shown in logs; defaults to kind

    @property
    def label(self) -> str:
        return self.name or self.kind


LOSS_KINDS = ("id", "triplet", "attribute")


# ---------------------------------------------------------------------------
# Identity loss, MBGN Eq. 9
# ---------------------------------------------------------------------------
def cross_entropy_loss(logits: Tensor, pids: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Identity cross-entropy ``L_id = -sum_i q_i log p_i`` (MBGN Eq. 9), averaged over the batch.

    ``label_smoothing`` (epsilon) replaces the one-hot ``q`` by
    ``(1 - eps) * onehot + eps / C`` (Szegedy et al. 2016); 0 gives Eq. 9 exactly.
    Computed in float32 so that float16 logits under autocast stay accurate.
    """
    if logits.dim() != 2:
        raise ValueError(f"cross_entropy_loss: logits must be (B, C), got {tuple(logits.shape)}")
    if pids.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy_loss: pids must be (B,)={logits.shape[0]}, got {tuple(pids.shape)}")
    return F.cross_entropy(logits.float(), pids.long(), label_smoothing=float(label_smoothing))


# ---------------------------------------------------------------------------
# Batch-hard triplet loss, MBGN Eq. 10
# ---------------------------------------------------------------------------
def euclidean_distance_matrix(features: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, B) Euclidean distances in float32, with a sqrt that has no NaN gradient at 0.

    ``|a|^2 + |b|^2 - 2 a.b`` is clamped at ``eps`` before the sqrt, so the gradient at
    a zero distance (the diagonal, duplicated images) is finite (it is 0 there, since the
    clamp cuts the path).
    """
    # float32 even when autocast hands us float16 / bfloat16 (float64 stays float64).
    x = features if features.dtype == torch.float64 else features.float()
    with torch.autocast(device_type=x.device.type, enabled=False):  # autocast would redo x @ x.T in half
        squared_norm = x.pow(2).sum(dim=1)  # (B,)
        squared = squared_norm[:, None] + squared_norm[None, :] - 2.0 * (x @ x.t())  # (B, B)
        return squared.clamp_min(eps).sqrt()


def triplet_loss(
    features: Tensor,
    pids: Tensor,
    margin: float = 1.2,
    soft_margin: bool = False,
    normalize_features: bool = False,
) -> Tensor:
    """Batch-hard triplet loss, MBGN Eq. 10 (Hermans et al. 2017), mean over anchors.

    For each anchor in a P x K batch: ``[max_pos d(a, p) - min_neg d(a, n) + alpha]_+``
    with Euclidean distances (float32, safe sqrt). Eq. 10 writes the positive term
    inside a sum over positives while calling the method "hard sample mining"; we take
    the hardest positive (the standard batch-hard form), MBGN's margin alpha = 1.2.
    ``soft_margin=True`` replaces ``[x + alpha]_+`` by ``softplus(x)`` (no margin).
    Anchors with no positive or no negative in the batch are left out; a batch with
    no valid anchor gives 0 (connected to the graph).
    """
    if features.dim() != 2:
        raise ValueError(f"triplet_loss: features must be (B, D), got {tuple(features.shape)}")
    if pids.shape != features.shape[:1]:
        raise ValueError(f"triplet_loss: pids must be (B,)={features.shape[0]}, got {tuple(pids.shape)}")
    x = features if features.dtype == torch.float64 else features.float()
    if normalize_features:
        x = F.normalize(x, dim=1)
    dist = euclidean_distance_matrix(x)  # (B, B)
    same = pids[:, None] == pids[None, :]  # (B, B)
    not_self = ~torch.eye(len(pids), dtype=torch.bool, device=pids.device)  # (B, B)
    positive = same & not_self
    negative = ~same
    # -inf / +inf fill keeps masked entries out of the max / min.
    hardest_positive = dist.masked_fill(~positive, float("-inf")).amax(dim=1)  # (B,)
    hardest_negative = dist.masked_fill(~negative, float("inf")).amin(dim=1)  # (B,)
    valid = positive.any(dim=1) & negative.any(dim=1)  # (B,)
    if not bool(valid.any()):
        return dist.sum() * 0.0
    gap = hardest_positive[valid] - hardest_negative[valid]
    if soft_margin:
        return F.softplus(gap).mean()
    return F.relu(gap + margin).mean()


# ---------------------------------------------------------------------------
# Attribute losses, MSRA Sec. 2.2 / 3.1 ("K cross entropy loss functions")
# ---------------------------------------------------------------------------
def attribute_loss(
    attribute_logits: list[Tensor] | tuple[Tensor, ...],
    targets: Tensor,
    num_classes: list[int] | tuple[int, ...] | None = None,
) -> Tensor:
    """Mean over attributes of each attribute's loss over the samples where it is known.

    ``attribute_logits[k]`` is ``(B, C_k)``; ``targets`` is ``(B, K)`` int with
    ``-1`` = unknown (masked out). A binary attribute may come as ``C_k = 1`` (one logit,
    binary cross-entropy with target in {0, 1}) or ``C_k = 2`` (two-way cross-entropy);
    ``C_k > 2`` is multi-class cross-entropy (Market's 4-class age). Attributes with no
    known label in the batch are skipped; a batch with no known label at all gives 0, not
    NaN. ``num_classes`` (e.g. from ``AttributeSpec``) is only checked against the logits.
    """
    if targets.dim() != 2:
        raise ValueError(f"attribute_loss: targets must be (B, K), got {tuple(targets.shape)}")
    if len(attribute_logits) != targets.shape[1]:
        raise ValueError(
            f"attribute_loss: {len(attribute_logits)} attribute logits for {targets.shape[1]} attribute columns"
        )
    if num_classes is not None and len(num_classes) != len(attribute_logits):
        raise ValueError(f"attribute_loss: num_classes has {len(num_classes)} entries, logits {len(attribute_logits)}")
    losses = []
    anchor = None  # something in the graph, for the all-unknown case
    for k, logits in enumerate(attribute_logits):
        if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
            raise ValueError(f"attribute_loss: logits of attribute {k} must be (B={targets.shape[0]}, C_k), got {tuple(logits.shape)}")
        width = logits.shape[1]
        if num_classes is not None and not (width == num_classes[k] or (width == 1 and num_classes[k] == 2)):
            raise ValueError(f"attribute_loss: attribute {k} has {num_classes[k]} classes but logits of width {width}")
        logits = logits.float()
        anchor = logits.sum() * 0.0 if anchor is None else anchor + logits.sum() * 0.0
        target = targets[:, k]
        known = target >= 0  # (B,)
        if not bool(known.any()):
            continue
        target = target[known].long()
        top = 1 if width == 1 else width - 1
        if int(target.max()) > top:
            raise ValueError(f"attribute_loss: attribute {k} has target {int(target.max())} but only {max(width, 2)} classes")
        if width == 1:
            losses.append(F.binary_cross_entropy_with_logits(logits[known, 0], target.float()))
        else:
            losses.append(F.cross_entropy(logits[known], target))
    if anchor is None:
        return targets.new_zeros((), dtype=torch.float32)
    if not losses:
        return anchor
    return torch.stack(losses).mean() + anchor


# ---------------------------------------------------------------------------
# The declared total loss, MBGN Eq. 8: L = L_id + lambda * L_tri (+ attribute terms)
# ---------------------------------------------------------------------------
_BATCH_FIELD = {"id": "pid", "triplet": "pid", "attribute": "attributes"}
_OPTIONS = {"id": {"label_smoothing"}, "triplet": {"margin", "soft_margin", "normalize_features"}, "attribute": {"num_classes"}}


def _single_term(term: LossTerm, value, target: Tensor) -> Tensor:
    options = dict(term.options)
    unknown = set(options) - _OPTIONS[term.kind]
    if unknown:
        raise ValueError(f"loss term {term.label!r}: unknown options {sorted(unknown)}; {term.kind!r} takes {sorted(_OPTIONS[term.kind])}")
    if term.kind == "id":
        return cross_entropy_loss(value, target, label_smoothing=options.get("label_smoothing", 0.0))
    if term.kind == "triplet":
        return triplet_loss(
            value,
            target,
            margin=options.get("margin", 1.2),
            soft_margin=options.get("soft_margin", False),
            normalize_features=options.get("normalize_features", False),
        )
    return attribute_loss(value, target, num_classes=options.get("num_classes"))


def compute_loss(outputs: dict, batch: dict, terms) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss of a model (MBGN Eq. 8 and its MSRA analogue) from its declared terms.

    For each :class:`LossTerm`: ``term.weight * mean(loss(x) for x in outputs[term.output])``.
    For ``"id"``/``"triplet"`` the list holds one tensor per head. For ``"attribute"``
    the list is one head's per-attribute logits ``[(B, C_k), ...]`` (model convention);
    a list of such lists (several attribute heads) is averaged over heads.
    Returns ``(total, parts)``; ``parts[term.label]`` is the weighted value, detached
    (terms sharing a label are summed).
    """
    terms = tuple(terms)
    if not terms:
        raise ValueError("compute_loss: no loss terms given")
    total = None
    parts: dict[str, Tensor] = {}
    for term in terms:
        if term.kind not in LOSS_KINDS:
            raise ValueError(f"loss term {term.label!r}: unknown kind {term.kind!r}; expected one of {LOSS_KINDS}")
        if term.output not in outputs:
            raise KeyError(
                f"loss term {term.label!r} reads model output {term.output!r}, which the model did not return "
                f"(outputs: {sorted(outputs)}); is the model in training mode?"
            )
        field_name = _BATCH_FIELD[term.kind]
        if field_name not in batch:
            raise KeyError(f"loss term {term.label!r} needs batch field {field_name!r}, missing (batch: {sorted(batch)})")
        target = batch[field_name]
        value = outputs[term.output]
        if isinstance(value, Tensor):
            heads = [value]
        elif term.kind == "attribute" and value and isinstance(value[0], Tensor):
            heads = [value]  # one head: the list is per attribute
        else:
            heads = list(value)
        if not heads:
            raise ValueError(f"loss term {term.label!r}: model output {term.output!r} is an empty list")
        if isinstance(target, Tensor):
            target = target.to(heads[0][0].device if term.kind == "attribute" else heads[0].device)
        loss = torch.stack([_single_term(term, head, target) for head in heads]).mean() * term.weight
        total = loss if total is None else total + loss
        parts[term.label] = parts[term.label] + loss.detach() if term.label in parts else loss.detach()
    return total, parts
