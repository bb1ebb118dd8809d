"""A torch Dataset over :class:`~reidlab.data.records.ImageRecord` lists, producing the batch contract.

One sample is a dict; the default ``collate_fn`` stacks it into the batch every
model and loss reads::

    "image"       (3, H, W) float32, normalised           -> (B, 3, H, W)
    "pid"         () int64                                -> (B,)
    "camid"       () int64                                -> (B,)
    "index"       () int64 (position in ``records``)      -> (B,)
    "attributes"  (K,) int64, -1 = unknown, K = 0 if none -> (B, K)
    "keypoints"   (17, 3) float32 x, y, visible in pixels of the transformed image;
                  a missing point is (-1, -1, 0)          -> (B, 17, 3)

``preload=True`` decodes every image once into a uint8 tensor cache (one
``(N, 3, H, W)`` tensor when all images share a size); ``dataset.to("cuda")``
moves that cache to the GPU, and the transforms of :mod:`reidlab.data.transforms`
then run there (use ``num_workers=0`` with a GPU cache).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .images import read_image
from .records import NUM_KEYPOINTS, AttributeSpec, ImageRecord

MISSING_KEYPOINTS = np.full((NUM_KEYPOINTS, 3), -1.0, dtype=np.float32)
MISSING_KEYPOINTS[:, 2] = 0.0


def _missing_keypoints() -> torch.Tensor:
    return torch.from_numpy(MISSING_KEYPOINTS.copy())  # (17, 3)


class ReIDDataset(Dataset):
    """Records -> sample dicts (see the module docstring).

    ``transform(image, keypoints) -> (tensor, keypoints)`` acts on the image and its
    keypoints together (build one with :func:`reidlab.data.transforms.build_transforms`);
    ``image`` is a PIL RGB image, or a uint8 ``(3, H, W)`` tensor when preloaded,
    ``keypoints`` a ``(17, 3)`` float32 array or None. Without a transform the
    image is only converted to a tensor and normalised (ImageNet mean/std).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable | None = None,
        attribute_spec: AttributeSpec | None = None,
        preload: bool = False,
        progress: bool = True,
    ):
        self.records = list(records)
        if transform is None:
            from .transforms import ToTensorNormalize

            transform = ToTensorNormalize()
        self.transform = transform
        self.attribute_spec = attribute_spec
        self.num_attributes = self._infer_num_attributes(attribute_spec)
        self.cache: torch.Tensor | list[torch.Tensor] | None = None
        if preload:
            self.preload(progress=progress)

    def _infer_num_attributes(self, spec: AttributeSpec | None) -> int:
        if spec is not None:
            expected = len(spec)
        else:
            first = next((r.attributes for r in self.records if r.attributes is not None), None)
            expected = 0 if first is None else len(first)
        for r in self.records:
            if r.attributes is not None and len(r.attributes) != expected:
                raise ValueError(
                    f"ReIDDataset: record {r.path} has {len(r.attributes)} attributes, expected {expected} "
                    f"({'from attribute_spec' if spec is not None else 'from the first labelled record'})"
                )
        return expected

    # ------------------------------------------------------------------ cache
    def preload(self, progress: bool = True) -> "ReIDDataset":
        """Decode every image once into a uint8 tensor cache."""
        from reidlab.progress import tqdm

        images = [
            torch.from_numpy(np.array(read_image(r.path), dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, H, W) uint8
            for r in tqdm(self.records, desc="preloading images", disable=not progress, unit="img")
        ]
        sizes = {tuple(im.shape) for im in images}
        self.cache = torch.stack(images) if len(sizes) == 1 and images else images  # (N, 3, H, W) uint8
        return self

    def to(self, device) -> "ReIDDataset":
        """Move the image cache (if any) to ``device``; samples then come out on it."""
        if self.cache is None:
            raise RuntimeError("ReIDDataset.to(): no image cache; construct with preload=True or call preload() first")
        self.cache = self.cache.to(device) if torch.is_tensor(self.cache) else [im.to(device) for im in self.cache]
        return self

    @property
    def cache_bytes(self) -> int:
        if self.cache is None:
            return 0
        tensors = [self.cache] if torch.is_tensor(self.cache) else self.cache
        return sum(t.numel() * t.element_size() for t in tensors)

    # ------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.records)

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.records]

    def _attributes(self, record: ImageRecord) -> torch.Tensor:
        if record.attributes is None:
            return torch.full((self.num_attributes,), -1, dtype=torch.int64)  # (K,)
        return torch.as_tensor(np.asarray(record.attributes), dtype=torch.int64)

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        """``index``, or ``(index, seed)``: the sample's random augmentation then comes from ``seed``
        alone (not from the worker's RNG stream), so a run resumed mid-epoch, with any number of
        workers, draws the same augmentations (see :class:`reidlab.data.sampler.SeededBatches`)."""
        if isinstance(index, tuple):
            index, seed = index
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._sample(int(index))
        return self._sample(int(index))

    def _sample(self, index: int) -> dict:
        record = self.records[index]
        image = self.cache[index] if self.cache is not None else read_image(record.path)
        keypoints = None if record.keypoints is None else np.asarray(record.keypoints, dtype=np.float32)
        if keypoints is not None and keypoints.shape != (NUM_KEYPOINTS, 3):
            raise ValueError(f"ReIDDataset: keypoints of {record.path} have shape {keypoints.shape}, expected (17, 3)")
        tensor, keypoints = self.transform(image, keypoints)
        if keypoints is None:
            keypoints = _missing_keypoints()
        return {
            "image": tensor,  # (3, H, W) float32
            "pid": torch.tensor(record.pid, dtype=torch.int64),
            "camid": torch.tensor(record.camid, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "attributes": self._attributes(record),  # (K,)
            "keypoints": torch.as_tensor(keypoints, dtype=torch.float32),  # (17, 3)
        }

    def __repr__(self) -> str:
        return (
            f"ReIDDataset({len(self)} images, {len(set(self.pids))} ids, attributes {self.num_attributes}, "
            f"cache {'none' if self.cache is None else f'{self.cache_bytes / 2**20:.1f} MiB'})"
        )
