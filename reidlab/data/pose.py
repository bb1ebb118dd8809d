"""Pose estimators that give a dataset COCO-17 keypoints, run once and cached as the loaders' CSVs.

MSRA (Sec. 2.3) runs a pose estimator (HRNet) on every image. Here:

- :class:`KeypointRCNNSource`: torchvision's ``keypointrcnn_resnet50_fpn`` (COCO-17, the joint
  set of our records). Weights only from ``$REIDLAB_WEIGHTS_DIR`` or the torch cache
  (``~/.cache/torch/hub/checkpoints/keypointrcnn_resnet50_fpn_coco-fc266e95.pth``): nothing is
  downloaded; absent weights are a one-line error naming the file.
- :class:`BlazePoseSource`: mediapipe's BlazePose (33 landmarks -> COCO-17 by name), optional
  (``pip install mediapipe==0.10.14``, the last wheel that ships its ``.tflite`` models).

:func:`estimate_keypoints` runs a source over image files in batches (progress bar) and
appends each batch to a Pose-Transfer CSV (:mod:`reidlab.data.keypoints` format, in pixels of
the images on disk), so an interrupted run resumes where it stopped;
:func:`estimate_split_keypoints` writes ``{prefix}-annotation-{train,test,query}.csv`` into
the dataset folder, which ``load_dataset`` then reads by itself (``duke-annotation-*.csv``
for DukeMTMC). An image in which no person is found gets an all-missing row (so it is not
run again).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .keypoints import CSV_HEADER, coco17_to_openpose18, openpose18_to_coco17, read_pose_csv
from .records import COCO17_NAMES, NUM_KEYPOINTS, ImageRecord, ReIDSplit

KEYPOINTRCNN_FILE = "keypointrcnn_resnet50_fpn_coco-fc266e95.pth"
SUBSET_CSV_PART = {"train": "train", "query": "query", "gallery": "test"}  # the loaders' file names


class PoseSource(Protocol):
    """``source(images) -> (N, 17, 3)`` float32 [x, y, visible] in pixels of each image;
    ``images`` are HxWx3 uint8 RGB arrays (sizes may differ)."""

    name: str

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def find_weight_file(filename: str) -> Path:
    """``$REIDLAB_WEIGHTS_DIR/filename`` or ``<torch hub dir>/checkpoints/filename``; a one-line error otherwise."""
    import torch

    places = []
    if os.environ.get("REIDLAB_WEIGHTS_DIR"):
        places.append(Path(os.environ["REIDLAB_WEIGHTS_DIR"]) / filename)
    places.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    for place in places:
        if place.is_file():
            return place
    raise FileNotFoundError(
        f"pose estimator weights not found: put {filename} in $REIDLAB_WEIGHTS_DIR or {places[-1].parent} "
        f"(nothing is downloaded; looked at {', '.join(str(p) for p in places)})"
    )


class KeypointRCNNSource:
    """torchvision ``keypointrcnn_resnet50_fpn`` (COCO-17); the highest-scoring person per image.

    ``weights``: ``"auto"`` (:func:`find_weight_file`), a path, or ``"random"`` (random
    initialisation: for tests only). ``min_size`` / ``max_size``: the detector's internal
    resize (re-ID crops are small; 256 px suffices for a person filling the crop).
    A keypoint counts as visible when its score exceeds ``keypoint_threshold``; an image
    whose best person scores below ``person_threshold`` gets all points missing.
    """

    name = "keypointrcnn_resnet50_fpn"

    def __init__(self, weights: str | os.PathLike = "auto", device: str = "cpu", min_size: int = 256,
                 max_size: int = 512, person_threshold: float = 0.5, keypoint_threshold: float = 0.0):
        import torch
        from torchvision.models.detection import keypointrcnn_resnet50_fpn

        # One person per crop: keep only the best detection (the keypoint head then runs once per image).
        model = keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None, min_size=min_size, max_size=max_size,
                                          box_detections_per_img=1, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=100)
        if weights != "random":
            path = find_weight_file(KEYPOINTRCNN_FILE) if weights == "auto" else Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"pose estimator weights not found: {path}")
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, KeyError) as error:
                raise ValueError(f"{path} is not a keypointrcnn_resnet50_fpn state dict ({str(error)[:120]})") from None
        self.model = model.eval().to(device)
        self.device = device
        self.person_threshold, self.keypoint_threshold = person_threshold, keypoint_threshold

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        tensors = [torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255).to(self.device)
                   for im in images]  # each (3, H, W)
        with torch.inference_mode():
            detections = self.model(tensors)
        out = np.full((len(images), NUM_KEYPOINTS, 3), -1.0, np.float32)  # (N, 17, 3)
        out[..., 2] = 0
        for i, det in enumerate(detections):
            if len(det["scores"]) == 0 or float(det["scores"].max()) < self.person_threshold:
                continue
            best = int(det["scores"].argmax())
            points = det["keypoints"][best].cpu().numpy()  # (17, 3) x, y, 1
            visible = det["keypoints_scores"][best].cpu().numpy() > self.keypoint_threshold  # (17,)
            out[i, visible, :2] = points[visible, :2]
            out[i, visible, 2] = 1
        return out


# BlazePose's 33 landmarks (mediapipe order): the COCO-17 points are the nose, the eye centres
# (2 / 5; 1, 3, 4, 6 are eye corners), the ears and the 12 limb joints, all by name.
BLAZEPOSE_FROM_COCO17: dict[str, int] = {
    "nose": 0, "left_eye": 2, "right_eye": 5, "left_ear": 7, "right_ear": 8,
    "left_shoulder": 11, "right_shoulder": 12, "left_elbow": 13, "right_elbow": 14,
    "left_wrist": 15, "right_wrist": 16, "left_hip": 23, "right_hip": 24,
    "left_knee": 25, "right_knee": 26, "left_ankle": 27, "right_ankle": 28,
}


def blazepose33_to_coco17(landmarks: np.ndarray, width: int, height: int, visibility_threshold: float = 0.5) -> np.ndarray:
    """``(33, 3)`` BlazePose [x, y, visibility] (x, y normalised to [0, 1]) -> ``(17, 3)`` COCO in pixels."""
    landmarks = np.asarray(landmarks, np.float32)
    if landmarks.shape != (33, 3):
        raise ValueError(f"blazepose33_to_coco17: expected (33, 3) landmarks, got {landmarks.shape}")
    out = np.full((NUM_KEYPOINTS, 3), -1.0, np.float32)
    out[:, 2] = 0
    for coco_index, name in enumerate(COCO17_NAMES):
        x, y, visibility = landmarks[BLAZEPOSE_FROM_COCO17[name]]
        px, py = x * width - 0.5, y * height - 0.5  # normalised corner-based -> pixel centres
        if visibility >= visibility_threshold and -0.5 <= px < width - 0.5 and -0.5 <= py < height - 0.5:
            out[coco_index] = (px, py, 1.0)
    return out


class BlazePoseSource:
    """mediapipe BlazePose (optional extra ``pose``: ``mediapipe==0.10.14``).

    Re-ID crops are small: each image is upscaled by ``upscale`` before detection (at 64x128,
    BlazePose's person detector often finds nobody; x2 helps on some crops, not all).
    """

    name = "blazepose"

    def __init__(self, model_complexity: int = 1, upscale: int = 2, min_detection_confidence: float = 0.3,
                 visibility_threshold: float = 0.5):
        try:
            import mediapipe as mp
        except ImportError as error:
            raise ImportError(
                f"BlazePoseSource needs mediapipe ({error}); install the optional extra: "
                f"pip install 'mediapipe==0.10.14' (the last wheel that ships the BlazePose .tflite models)"
            ) from None
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=model_complexity,
                                            min_detection_confidence=min_detection_confidence)
        self.upscale, self.visibility_threshold = int(upscale), visibility_threshold

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from PIL import Image

        out = np.full((len(images), NUM_KEYPOINTS, 3), -1.0, np.float32)
        out[..., 2] = 0
        for i, image in enumerate(images):
            height, width = image.shape[:2]
            big = np.asarray(Image.fromarray(image).resize((width * self.upscale, height * self.upscale), Image.BICUBIC))
            result = self._pose.process(big)
            if result.pose_landmarks is None:
                continue
            landmarks = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark], np.float32)
            out[i] = blazepose33_to_coco17(landmarks, width, height, self.visibility_threshold)
        return out


def _append_rows(path: Path, rows: dict[str, np.ndarray]) -> None:
    from .keypoints import _number

    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as handle:
        if new:
            handle.write(CSV_HEADER + "\n")
        for name, yx18 in rows.items():
            handle.write(f"{name}: [{', '.join(_number(v) for v in yx18[:, 0])}]: [{', '.join(_number(v) for v in yx18[:, 1])}]\n")
        handle.flush()
        os.fsync(handle.fileno())


def estimate_keypoints(
    paths: Sequence[str | os.PathLike],
    source: PoseSource,
    cache_csv: str | os.PathLike,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """``{basename: (17, 3)}`` for every image in ``paths``, estimated once and cached in ``cache_csv``.

    Rows already in the cache are not run again (resume); new ones are appended after each
    batch. Coordinates are in pixels of the images on disk. Basenames must be unique.
    """
    from reidlab.progress import tqdm

    from .images import read_image

    cache_csv = Path(cache_csv)
    names = [os.path.basename(str(p)) for p in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"estimate_keypoints: image file names must be unique (the cache {cache_csv} is keyed by name)")
    done = read_pose_csv(cache_csv) if cache_csv.is_file() else {}
    todo = [(name, path) for name, path in zip(names, paths) if name not in done]
    with tqdm(total=len(todo), desc=f"keypoints ({source.name})", unit="img", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            images = [np.asarray(read_image(path), dtype=np.uint8) for _, path in chunk]
            keypoints = np.asarray(source(images), np.float32)  # (n, 17, 3)
            if keypoints.shape != (len(chunk), NUM_KEYPOINTS, 3):
                raise ValueError(f"pose source {source.name} returned shape {keypoints.shape}, expected ({len(chunk)}, 17, 3)")
            rows = {name: coco17_to_openpose18(kp) for (name, _), kp in zip(chunk, keypoints)}
            _append_rows(cache_csv, rows)
            done.update(rows)
            bar.update(len(chunk))
    return {name: openpose18_to_coco17(done[name], annotation_size=None) for name in names}


def estimate_split_keypoints(
    split: ReIDSplit,
    source: PoseSource,
    prefix: str | None = None,
    folder: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> ReIDSplit:
    """Run ``source`` on every image of ``split`` lacking keypoints; cache to
    ``folder/{prefix}-annotation-{train,test,query}.csv`` (default: ``split.root``, and the
    loader's prefix: ``duke`` for DukeMTMC, ``market`` for Market-1501, else the split name),
    and return the split with those keypoints attached (existing keypoints are kept)."""
    folder = Path(folder or split.root or ".")
    if not folder.is_dir():
        raise FileNotFoundError(f"estimate_split_keypoints: folder not found: {folder}")
    prefix = prefix or {"dukemtmc": "duke", "market1501": "market"}.get(split.name, split.name)
    subsets = {}
    for subset, part in SUBSET_CSV_PART.items():
        records: list[ImageRecord] = getattr(split, subset)
        lacking = [r.path for r in records if r.keypoints is None]
        found = estimate_keypoints(lacking, source, folder / f"{prefix}-annotation-{part}.csv", batch_size, progress) if lacking else {}
        subsets[subset] = [
            r if r.keypoints is not None
            else ImageRecord(r.path, r.pid, r.camid, r.attributes, found[os.path.basename(r.path)], r.extra)
            for r in records
        ]
    return ReIDSplit(split.name, subsets["train"], subsets["query"], subsets["gallery"], split.attribute_spec, split.root)
