"""Keypoint heat maps for the Pose Pyramid (MSRA Sec. 2.3), and a pluggable pose source.

The paper extracts key points with HRNet and pools "the product of global features
and heat map". Here a *pose source* gives COCO-17 keypoints ``(B, 17, 3)`` in pixels
of the input image (``x, y, visible``) and :func:`keypoint_heatmaps` draws them as
Gaussians at the feature map's resolution. The default source,
:class:`DatasetKeypoints`, passes on the dataset's keypoints (synthetic ground truth,
or Market-1501's keypoint CSV); an estimator with local weights can plug in later
by implementing :class:`PoseSource`.

Choices (the paper leaves them open):
- a pose source returns keypoints, not heat maps, so every source is drawn the same
  way and missing points are explicit (``visible == 0``);
- ``sigma`` is in feature-map cells (default 1.0), so it does not change with the stride;
- a point is *present* when visible and inside the image; an absent point gets an
  all-zero heat map, which the Pose Pyramid masks out (never a division by zero).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from reidlab.data.records import NUM_KEYPOINTS


@runtime_checkable
class PoseSource(Protocol):
    """Anything that gives COCO-17 keypoints ``(B, 17, 3)`` [x, y, visible] in input pixels."""

    def __call__(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor: ...


class DatasetKeypoints:
    """The dataset's own keypoints (``batch["keypoints"]``), checked and passed on.

    Stands in for the paper's HRNet: the synthetic data has ground-truth points and
    Market-1501 has a released keypoint CSV.
    """

    def __call__(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        if keypoints is None:
            raise ValueError(
                "DatasetKeypoints: keypoints=None. The Pose Pyramid needs batch['keypoints'] "
                "(B, 17, 3) in input pixels; use a dataset with keypoints or plug in a pose estimator."
            )
        check_keypoints(keypoints, images.shape[0])
        return keypoints.to(device=images.device, dtype=images.dtype)


def check_keypoints(keypoints: torch.Tensor, batch_size: int | None = None) -> None:
    """Raise a clear error unless ``keypoints`` is ``(B, 17, 3)``."""
    if keypoints.dim() != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must be (B, {NUM_KEYPOINTS}, 3) [x, y, visible], got {tuple(keypoints.shape)}")
    if batch_size is not None and keypoints.shape[0] != batch_size:
        raise ValueError(f"keypoints batch size {keypoints.shape[0]} != images batch size {batch_size}")


def keypoint_presence(keypoints: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
    """``(B, 17)`` bool: visible and inside the ``(H, W)`` input image (NaN coordinates count as absent)."""
    height, width = input_size
    x, y, visible = keypoints.unbind(-1)  # (B, 17) each
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return (visible > 0) & inside & torch.isfinite(x) & torch.isfinite(y)


def to_feature_coords(keypoints: torch.Tensor, input_size: tuple[int, int], feature_size: tuple[int, int]) -> torch.Tensor:
    """Pixel centres of the input mapped to cell centres of the feature map: ``(B, 17, 2)`` [x, y].

    ``x_f = (x + 0.5) * w / W - 0.5``: exact under a horizontal flip ``x -> W - 1 - x``.
    """
    (height, width), (h, w) = input_size, feature_size
    x = (keypoints[..., 0] + 0.5) * (w / width) - 0.5  # (B, 17)
    y = (keypoints[..., 1] + 0.5) * (h / height) - 0.5  # (B, 17)
    return torch.stack([x, y], dim=-1)  # (B, 17, 2)


def keypoint_heatmaps(
    keypoints: torch.Tensor,
    input_size: tuple[int, int],
    feature_size: tuple[int, int],
    sigma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian heat maps ``(B, 17, h, w)`` (peak 1) and presence ``(B, 17)`` bool.

    Absent points (see :func:`keypoint_presence`) get all-zero maps.
    """
    check_keypoints(keypoints)
    present = keypoint_presence(keypoints, input_size)  # (B, 17)
    h, w = feature_size
    centres = to_feature_coords(keypoints, input_size, feature_size)  # (B, 17, 2)
    centres = torch.where(present[..., None], centres, torch.zeros_like(centres))  # keep NaN out of exp
    ys = torch.arange(h, device=keypoints.device, dtype=keypoints.dtype)  # (h,)
    xs = torch.arange(w, device=keypoints.device, dtype=keypoints.dtype)  # (w,)
    dy2 = (ys[None, None, :] - centres[..., 1:2]) ** 2  # (B, 17, h)
    dx2 = (xs[None, None, :] - centres[..., 0:1]) ** 2  # (B, 17, w)
    heat = torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma**2))  # (B, 17, h, w)
    heat = heat * present[..., None, None].to(heat.dtype)  # (B, 17, h, w)
    return heat, present
