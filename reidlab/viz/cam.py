"""Grad-CAM for re-ID embedding models, and how much attention falls on an occluder (MBGN Fig. 5).

MBGN compares GSRPA's attention with Grad-CAM of the baseline (Sec. 4.5, Fig. 5: "our GSRPA
doesn't pay attention to the occlusion"). This module turns that picture into a number: the share
of a saliency map's mass inside a binary occluder mask (the synthetic dataset saves one per
occluded image, ``record.extra["mask_path"]``), for a model's own attention (``explain()``:
GSRPA or CBAM-S) and for Grad-CAM (Selvaraju et al., ICCV 2017) through the ``grad-cam`` package.

Grad-CAM needs a scalar per image. A re-ID model outputs an embedding, not class scores, so the
target is a similarity of the embedding to a reference feature (:class:`SimilarityTarget`): a
gallery feature (what makes the two match) or, by default, the image's own embedding. With its own
embedding the *cosine* is useless: it is at its maximum, 1, and its gradient is exactly zero; the
default is therefore the dot product with the (detached) own embedding, whose gradient is that
embedding's direction ("what builds this feature"). (The package scales every map to [0, 1], so
a zero-gradient target would not show as an empty map but as scaled float noise.)

Share convention: a map of ``h x w`` cells over an ``H x W`` mask covers it cell by cell (nearest
upsampling, as the figures draw it); share = sum(map * mask) / sum(map), for a non-negative map.
A uniform map gives the mask's area fraction, the share of an attention that ignores the occluder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION_STAGES = ("layer4_l", "layer4", "layer4_g", "layer3", "layer2", "layer1")  # deepest first
TARGET_LAYERS = ("backbone.layer4", "layer4_l", "global_layer4", "layer4")  # bnneck/pcb/resnet_gsrpa, mbgn, msra


def _grad_cam_package():
    try:
        import pytorch_grad_cam
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("reidlab.viz.cam needs the grad-cam package: pip install grad-cam "
                          "(it is in the 'notebooks' extra)") from error
    return pytorch_grad_cam


class EmbeddingOutput(nn.Module):
    """A reidlab model seen as ``images -> (B, D) features`` (what Grad-CAM calls), with the
    batch's keypoints bound for models that need them (MSRA)."""

    def __init__(self, model: nn.Module, keypoints: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.keypoints = keypoints

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(images, self.keypoints) if self.keypoints is not None else self.model(images)
        return out["features"] if isinstance(out, Mapping) else out  # (B, D)


class SimilarityTarget:
    """Grad-CAM target for one image: ``cos(f, r)`` (``kind="cosine"``) or ``f . r`` (``"dot"``)
    of the image's embedding ``f`` (D,) with a fixed reference feature ``r`` (D,)."""

    def __init__(self, reference: torch.Tensor, kind: str = "cosine"):
        if kind not in ("cosine", "dot"):
            raise ValueError(f"SimilarityTarget: kind must be 'cosine' or 'dot', got {kind!r}")
        self.reference = reference.detach().flatten()
        self.kind = kind

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        reference = self.reference.to(output.device, output.dtype)
        if self.kind == "cosine":
            return F.cosine_similarity(output.flatten(), reference, dim=0)
        return (output.flatten() * reference).sum()


def default_target_layer(model: nn.Module) -> nn.Module:
    """The last backbone stage (before any attention after it): ``backbone.layer4`` (BNNeck, PCB,
    ResNet+GSRPA), ``layer4_l`` (MBGN's Branch l, which AABS splits) or ``global_layer4`` (MSRA)."""
    for name in TARGET_LAYERS:
        module = model
        for part in name.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.Module):
            return module
    raise ValueError(f"grad_cam: no target layer found in {type(model).__name__} (looked for {TARGET_LAYERS}); "
                     "pass target_layer=the module to explain")


def grad_cam(model: nn.Module, images: torch.Tensor, reference: torch.Tensor | None = None,
             target_layer: nn.Module | None = None, kind: str | None = None,
             keypoints: torch.Tensor | None = None) -> np.ndarray:
    """Grad-CAM maps ``(B, H, W)`` in [0, 1] (the package scales each image's map) for ``images
    (B, 3, H, W)``, with :class:`SimilarityTarget` per image.

    ``reference``: ``(D,)`` one feature for all images (e.g. a query's) or ``(B, D)`` one per
    image (e.g. each image's best gallery match); default: each image's own embedding with
    ``kind="dot"`` (see the module docstring: the cosine with itself has zero gradient).
    ``kind``: "cosine" (default with a reference) or "dot". The model runs in eval mode; its mode
    is restored after."""
    from reidlab.models import eval_mode

    package = _grad_cam_package()
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"grad_cam: images must be (B, 3, H, W), got {tuple(images.shape)}")
    wrapper = EmbeddingOutput(model, keypoints)
    layer = target_layer if target_layer is not None else default_target_layer(model)
    with eval_mode(model):
        if reference is None:
            with torch.no_grad():
                reference = wrapper(images)  # (B, D) own embeddings
            kind = kind or "dot"
        kind = kind or "cosine"
        reference = reference.detach()
        if reference.dim() == 1:
            reference = reference.unsqueeze(0).expand(images.shape[0], -1)
        if reference.shape[0] != images.shape[0]:
            raise ValueError(f"grad_cam: reference has {reference.shape[0]} rows for {images.shape[0]} images; "
                             "give one (D,) feature or one per image (B, D)")
        targets = [SimilarityTarget(r, kind) for r in reference]
        with package.GradCAM(model=wrapper, target_layers=[layer]) as cam, torch.enable_grad():
            maps = cam(input_tensor=images, targets=targets)  # (B, H, W) float32 in [0, 1]
    return np.asarray(maps, dtype=np.float32)


# ----------------------------------------------------------------------------- masks and shares
def load_mask(source, size: tuple[int, int] | None = None) -> np.ndarray:
    """An occluder mask as ``(H, W)`` bool: from a record (``record.extra["mask_path"]``) or a
    path to a PNG (255 = occluder); resized (nearest) to ``size`` = (H, W) when given."""
    from PIL import Image

    path = source.extra.get("mask_path") if hasattr(source, "extra") else source
    if path is None:
        raise FileNotFoundError(f"load_mask: record {getattr(source, 'path', source)} has no occluder mask "
                                "(record.extra['mask_path'] is missing: only occluded synthetic images have one)")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_mask: mask file not found: {path} (regenerate the synthetic dataset?)")
    picture = Image.open(path).convert("L")
    if size is not None:
        picture = picture.resize((int(size[1]), int(size[0])), Image.NEAREST)
    return np.asarray(picture) > 127


def _upsample(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if saliency.shape == tuple(size):
        return saliency
    tensor = torch.as_tensor(saliency, dtype=torch.float64)[None, None]
    return F.interpolate(tensor, size=tuple(size), mode="nearest")[0, 0].numpy()  # (H, W)


def mask_share(saliency, mask) -> float:
    """Share of ``saliency``'s mass inside ``mask``: ``sum(S * M) / sum(S)`` with the ``(h, w)`` map
    upsampled cell by cell (nearest) to the mask's ``(H, W)``. NaN for an all-zero map; a negative
    value is an error (give attention or a ReLU'd CAM, not signed scores)."""
    values = saliency.detach().cpu().double().numpy() if hasattr(saliency, "detach") else np.asarray(saliency, np.float64)
    values = np.squeeze(values)
    inside = np.asarray(mask).astype(bool)
    if values.ndim != 2 or inside.ndim != 2:
        raise ValueError(f"mask_share: expected a 2-D map and a 2-D mask, got {values.shape} and {inside.shape}")
    if (values < 0).any():
        raise ValueError("mask_share: the map has negative values; shares need a non-negative map")
    up = _upsample(values, inside.shape)
    total = up.sum()
    return float((up * inside).sum() / total) if total > 0 else float("nan")


def attention_maps(model: nn.Module, images: torch.Tensor, stage: str | None = None) -> tuple[str, torch.Tensor]:
    """A model's own spatial attention ``(B, h, w)`` from ``model.explain(images)`` (MBGN: its
    ``.attention`` dict; ResNet+GSRPA: the dict itself) at ``stage`` (default: the deepest of
    :data:`ATTENTION_STAGES` present). Returns (stage, maps). A model without attention is an error."""
    if not hasattr(model, "explain"):
        raise ValueError(f"attention_maps: {type(model).__name__} has no explain(); it has no attention to read")
    explanation = model.explain(images)
    stages = explanation.attention if hasattr(explanation, "attention") else explanation
    if not isinstance(stages, Mapping) or not stages:
        raise ValueError(f"attention_maps: {type(model).__name__} has no spatial attention (GSRPA / CBAM-S)")
    if stage is None:
        stage = next((s for s in ATTENTION_STAGES if s in stages), next(iter(stages)))
    if stage not in stages:
        raise ValueError(f"attention_maps: no attention at stage {stage!r}; stages: {list(stages)}")
    return stage, stages[stage].attention[:, 0].detach().float().cpu()  # (B, h, w)


def occluder_shares(model: nn.Module, records: Sequence, height: int, width: int, source: str = "attention",
                    stage: str | None = None, batch_size: int = 8, reference: str = "self") -> pd.DataFrame:
    """Per occluded record (records without a mask are skipped), the share of the model's
    ``source`` map inside the occluder mask: ``source="attention"`` (``explain()``, GSRPA/CBAM-S
    at ``stage``) or ``"grad-cam"`` (:func:`grad_cam`, own-embedding target). Columns: path, pid,
    occluder, share, area (the mask's area fraction: the share of a uniform map), stage."""
    from .figures import records_batch

    if source not in ("attention", "grad-cam"):
        raise ValueError(f"occluder_shares: source must be 'attention' or 'grad-cam', got {source!r}")
    occluded = [r for r in records if r.extra.get("mask_path")]
    rows = []
    for start in range(0, len(occluded), batch_size):
        chunk = occluded[start: start + batch_size]
        images = records_batch(chunk, height, width)["image"]  # (b, 3, H, W)
        if source == "attention":
            used, maps = attention_maps(model, images, stage)
            maps = maps.numpy()
        else:
            used, maps = "grad-cam", grad_cam(model, images)
        for record, saliency in zip(chunk, maps):
            mask = load_mask(record, (height, width))
            rows.append({"path": record.path, "pid": record.pid, "occluder": record.extra.get("occluder", ""),
                         "share": mask_share(saliency, mask), "area": float(mask.mean()), "stage": used})
    return pd.DataFrame(rows, columns=["path", "pid", "occluder", "share", "area", "stage"])


def occluder_share_table(models: Mapping[str, nn.Module], records: Sequence, height: int, width: int,
                         sources: Sequence[str] = ("attention", "grad-cam"), stage: str | None = None,
                         batch_size: int = 8) -> pd.DataFrame:
    """One row per (model, source): images, mean share inside the occluder, mean mask area, and
    their ratio (1 = no preference, < 1 = the map avoids the occluder). A model without attention
    gets only its Grad-CAM row. Means rounded to 4 significant digits."""
    from .figures import round_sig

    rows = []
    for name, model in models.items():
        for source in sources:
            if source == "attention" and not _has_attention(model):
                continue
            shares = occluder_shares(model, records, height, width, source, stage, batch_size)
            share, area = float(shares["share"].mean()), float(shares["area"].mean())
            rows.append({"model": name, "source": source, "stage": shares["stage"].iloc[0] if len(shares) else "",
                         "images": len(shares), "share": share, "area": area,
                         "ratio": share / area if area > 0 else float("nan")})
    table = pd.DataFrame(rows, columns=["model", "source", "stage", "images", "share", "area", "ratio"])
    for column in ("share", "area", "ratio"):
        table[column] = round_sig(table[column].to_numpy(np.float64))
    return table


def _has_attention(model: nn.Module) -> bool:
    attention = getattr(model, "attention", None)
    return isinstance(attention, nn.ModuleDict) and len(attention) > 0


__all__ = [
    "EmbeddingOutput", "SimilarityTarget", "attention_maps", "default_target_layer", "grad_cam", "load_mask",
    "mask_share", "occluder_share_table", "occluder_shares",
]
