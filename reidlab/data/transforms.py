"""Sample transforms that move the image and its keypoints together.

Every transform is a callable ``(image, keypoints) -> (image, keypoints)``:
``image`` a float ``(3, H, W)`` tensor in [0, 1] (or normalised, after
:class:`Normalize`), ``keypoints`` a ``(17, 3)`` float32 tensor ``[x, y, visible]``
or None. :func:`build_transforms` chains them and also accepts a PIL image or a
uint8 tensor as input (the preloaded cache of :class:`~reidlab.data.dataset.ReIDDataset`).

Coordinate convention: pixel ``i`` is centred at coordinate ``i`` (it covers
``[i - 0.5, i + 0.5]``). Hence a resize by ``s`` maps ``x -> (x + 0.5) s - 0.5``
(as bilinear interpolation with ``align_corners=False`` moves pixels), a
horizontal flip maps ``x -> W - 1 - x`` (pixel ``x`` lands in column ``W - 1 - x``)
and swaps left/right points (:data:`~reidlab.data.records.COCO17_FLIP_PAIRS`),
and a crop shifts points; points that leave the image become missing ``(-1, -1, 0)``.
On input, NaN points and points outside the image become missing too, and :class:`Compose`
counts them (``dropped_keypoints``; a logged warning names the first). Random erasing
hides the points it covers (an erased joint is no longer visible).

All randomness comes from torch's global RNG (``torch.manual_seed`` makes it
repeatable; DataLoader workers get their own seeds). Everything is tensor code,
so the same transforms run on a GPU-resident image cache.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .records import COCO17_FLIP_PAIRS, NUM_KEYPOINTS

logger = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FLIP_ORDER = list(range(NUM_KEYPOINTS))
for _left, _right in COCO17_FLIP_PAIRS:
    _FLIP_ORDER[_left], _FLIP_ORDER[_right] = _right, _left


def to_float_tensor(image) -> torch.Tensor:
    """PIL RGB image, HxWx3 uint8 array, or (3, H, W) uint8/float tensor -> (3, H, W) float32 in [0, 1]."""
    if torch.is_tensor(image):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
        return image.float().div(255.0) if image.dtype == torch.uint8 else image.float()
    array = np.array(image, dtype=np.uint8, copy=True) if not isinstance(image, np.ndarray) else image
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got an array of shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255.0)  # (3, H, W)


def _as_keypoints(keypoints) -> torch.Tensor | None:
    if keypoints is None:
        return None
    kp = torch.as_tensor(np.asarray(keypoints) if not torch.is_tensor(keypoints) else keypoints, dtype=torch.float32).clone()
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"expected keypoints of shape (17, 3) [x, y, visible], got {tuple(kp.shape)}")
    return kp.cpu()


def _mark_missing(kp: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
    kp[missing] = torch.tensor([-1.0, -1.0, 0.0])
    return kp


def _image_size(image) -> tuple[int, int] | None:
    """(height, width) of a PIL image, HxWx3 array or (3, H, W) tensor."""
    if torch.is_tensor(image):
        return tuple(image.shape[-2:])
    if isinstance(image, np.ndarray):
        return tuple(image.shape[:2])
    if hasattr(image, "size"):
        width, height = image.size
        return height, width
    return None


def drop_invalid_keypoints(keypoints: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, int]:
    """Visible points that are NaN/inf or outside the ``height x width`` image become missing;
    returns the keypoints and how many were dropped."""
    x, y = keypoints[:, 0], keypoints[:, 1]
    visible = keypoints[:, 2] > 0
    bad = visible & (~torch.isfinite(x) | ~torch.isfinite(y) | (x < -0.5) | (x >= width - 0.5) | (y < -0.5) | (y >= height - 0.5))
    bad |= torch.isnan(keypoints[:, 2])
    return _mark_missing(keypoints, bad), int(bad.sum())


class Compose:
    """Chain of transforms. Input keypoints that are NaN or outside the input image become
    missing; ``dropped_keypoints`` counts them over all calls, with a logged warning the
    first time and each time the count grows tenfold."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        self.dropped_keypoints = 0
        self._next_report = 1

    def __call__(self, image, keypoints=None):
        keypoints = _as_keypoints(keypoints)
        size = _image_size(image)
        if keypoints is not None and size is not None:
            keypoints, dropped = drop_invalid_keypoints(keypoints, *size)
            if dropped:
                self.dropped_keypoints += dropped
                if self.dropped_keypoints >= self._next_report:
                    logger.warning(
                        "%d keypoint(s) so far were NaN or outside their image (e.g. in a %dx%d image) "
                        "and became missing", self.dropped_keypoints, size[1], size[0],
                    )
                    self._next_report = 10 * self.dropped_keypoints
        for transform in self.transforms:
            image, keypoints = transform(image, keypoints)
        return image, keypoints

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"  {t!r},\n" for t in self.transforms) + ")"


class ToFloat:
    """Any image input -> (3, H, W) float32 in [0, 1]."""

    def __call__(self, image, keypoints=None):
        return to_float_tensor(image), keypoints

    def __repr__(self) -> str:
        return "ToFloat()"


class Resize:
    """Bilinear resize (antialiased) to ``height x width``; keypoints scaled about pixel centres."""

    def __init__(self, height: int, width: int):
        if height <= 0 or width <= 0:
            raise ValueError(f"Resize: height and width must be positive, got {height} x {width}")
        self.height, self.width = int(height), int(width)

    def __call__(self, image, keypoints=None):
        image = to_float_tensor(image)
        _, h, w = image.shape
        if (h, w) != (self.height, self.width):
            image = F.interpolate(
                image[None], size=(self.height, self.width), mode="bilinear", align_corners=False, antialias=True
            )[0]  # (3, height, width)
            if keypoints is not None:
                visible = keypoints[:, 2] > 0
                keypoints[visible, 0] = (keypoints[visible, 0] + 0.5) * (self.width / w) - 0.5
                keypoints[visible, 1] = (keypoints[visible, 1] + 0.5) * (self.height / h) - 0.5
        return image, keypoints

    def __repr__(self) -> str:
        return f"Resize({self.height}, {self.width})"


class RandomHorizontalFlip:
    """Mirror with probability ``p``: x -> W - 1 - x and left/right keypoints swap."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, image, keypoints=None):
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return image, keypoints
        image = image.flip(-1)  # (3, H, W)
        if keypoints is not None:
            width = image.shape[-1]
            visible = keypoints[:, 2] > 0
            keypoints[visible, 0] = width - 1 - keypoints[visible, 0]
            keypoints = keypoints[_FLIP_ORDER]  # person's left becomes right
        return image, keypoints

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class PadRandomCrop:
    """Zero-pad by ``pad`` pixels on every side, then crop the original size at a random offset."""

    def __init__(self, pad: int = 10):
        if pad < 0:
            raise ValueError(f"PadRandomCrop: pad must be >= 0, got {pad}")
        self.pad = int(pad)

    def __call__(self, image, keypoints=None):
        if self.pad == 0:
            return image, keypoints
        _, h, w = image.shape
        padded = F.pad(image, (self.pad, self.pad, self.pad, self.pad))  # (3, H + 2p, W + 2p)
        top = int(torch.randint(0, 2 * self.pad + 1, ()))
        left = int(torch.randint(0, 2 * self.pad + 1, ()))
        image = padded[:, top:top + h, left:left + w]  # (3, H, W)
        if keypoints is not None:
            visible = keypoints[:, 2] > 0
            keypoints[visible, 0] += self.pad - left
            keypoints[visible, 1] += self.pad - top
            x, y = keypoints[:, 0], keypoints[:, 1]
            outside = visible & ((x < -0.5) | (x >= w - 0.5) | (y < -0.5) | (y >= h - 0.5))
            keypoints = _mark_missing(keypoints, outside)
        return image, keypoints

    def __repr__(self) -> str:
        return f"PadRandomCrop(pad={self.pad})"


class Normalize:
    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image, keypoints=None):
        image = to_float_tensor(image)
        return (image - self.mean.to(image.device)) / self.std.to(image.device), keypoints

    def __repr__(self) -> str:
        return f"Normalize(mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())})"


class RandomErasing:
    """Random erasing (Zhong et al., AAAI 2020) on the normalised tensor.

    With ``hide_keypoints`` (default) the points inside the erased box become missing: a pose
    estimator would not see an erased joint, so the pose branch should not pool features there
    (``False`` keeps them, as a model of occlusion with known pose)."""

    def __init__(self, p: float = 0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), value: float = 0.0,
                 hide_keypoints: bool = True):
        from torchvision.transforms import RandomErasing as _TorchvisionErasing

        self.p = float(p)
        self.scale, self.ratio, self.value = tuple(scale), tuple(ratio), value
        self.hide_keypoints = bool(hide_keypoints)
        self._get_params = _TorchvisionErasing.get_params

    def __call__(self, image, keypoints=None):
        if self.p <= 0 or float(torch.rand(())) >= self.p:
            return image, keypoints
        top, left, h, w, fill = self._get_params(image, scale=self.scale, ratio=self.ratio, value=[self.value])
        if fill.shape == image.shape:  # torchvision found no box in 10 tries: it returns the image unchanged
            return image, keypoints
        image = image.clone()
        image[..., top:top + h, left:left + w] = fill.to(image.device, image.dtype)  # (3, H, W)
        if keypoints is not None and self.hide_keypoints:
            x, y = keypoints[:, 0], keypoints[:, 1]
            inside = (keypoints[:, 2] > 0) & (x >= left - 0.5) & (x < left + w - 0.5) & (y >= top - 0.5) & (y < top + h - 0.5)
            keypoints = _mark_missing(keypoints, inside)
        return image, keypoints

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, hide_keypoints={self.hide_keypoints})"


class ToTensorNormalize(Compose):
    """No geometry: tensor conversion and ImageNet normalisation only."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__([ToFloat(), Normalize(mean, std)])


def build_transforms(
    height: int,
    width: int,
    train: bool,
    flip_prob: float = 0.5,
    pad: int = 10,
    erasing_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """The usual re-ID pipeline as one callable ``(image, keypoints) -> (tensor, keypoints)``.

    Train: resize, horizontal flip, pad + random crop, normalise, random erasing.
    Test: resize, normalise.
    """
    steps: list[Callable] = [ToFloat(), Resize(height, width)]
    if train:
        steps += [RandomHorizontalFlip(flip_prob), PadRandomCrop(pad), Normalize(mean, std), RandomErasing(erasing_prob)]
    else:
        steps += [Normalize(mean, std)]
    return Compose(steps)
