"""Feature extraction and the standard re-ID evaluation (CMC, mAP, mINP), optional re-ranking.

    >>> feats = extract_features(model, split.query, 256, 128, flip=True)
    >>> result = evaluate(model, split, 256, 128)          # dict: rank1, mAP, mINP, cmc, ...
    >>> results_frame({"bnneck": result})                  # one row per run, in %

``model`` follows the output convention of :mod:`reidlab.models`: in eval mode
``model(images, keypoints=...)["features"]`` is the retrieval embedding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from reidlab.progress import tqdm

from reidlab.data.records import COCO17_FLIP_PAIRS, ImageRecord, ReIDSplit


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None: CUDA when present, else CPU; anything else as torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} asked for, but CUDA is not available")
    return device


def flip_keypoints(keypoints: torch.Tensor, width: int) -> torch.Tensor:
    """Keypoints (B, 17, 3) of a horizontally flipped image: x -> W-1-x, left <-> right swapped."""
    flipped = keypoints.clone()
    visible = flipped[..., 2] > 0
    flipped[..., 0] = torch.where(visible, (width - 1) - flipped[..., 0], flipped[..., 0])
    order = list(range(keypoints.shape[1]))
    for a, b in COCO17_FLIP_PAIRS:
        order[a], order[b] = b, a
    return flipped[:, order]  # (B, 17, 3)


def _eval_loader(records, height, width, batch_size, num_workers):
    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.transforms import build_transforms

    dataset = ReIDDataset(list(records), transform=build_transforms(height, width, train=False))
    # Own generator: creating the iterator must not consume the global RNG (resume equality).
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        generator=torch.Generator(), pin_memory=torch.cuda.is_available(),
    )


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    records: Sequence[ImageRecord],
    height: int,
    width: int,
    batch_size: int = 128,
    flip: bool = False,
    device: str | torch.device | None = "auto",
    num_workers: int = 0,
    amp: bool = True,
    progress: bool = True,
    desc: str = "features",
) -> torch.Tensor:
    """The model's retrieval features for ``records``, (N, D) float32 on CPU, in record order.

    ``flip=True`` averages each image's features with its mirror image's
    (keypoints mirrored too). Keypoints are passed when ``model.requires``
    names them. ``amp``: the training precision's choice for the device
    (:func:`reidlab.engine.precision.resolve_amp` "auto": bf16 on CUDA and on CPUs with
    native bf16, else float32); ``amp=False`` is float32. Features are returned in float32. The model's train/eval mode is restored afterwards.
    """
    if len(records) == 0:
        raise ValueError("extract_features: no records given")
    device = resolve_device(device)
    needs_keypoints = "keypoints" in getattr(model, "requires", set())
    was_training = model.training
    model.eval()
    model_device = next(model.parameters()).device
    if model_device != device:
        model.to(device)
    from reidlab.engine.precision import resolve_amp, use_channels_last

    autocast_dtype = resolve_amp("auto" if amp else "off", device)
    if autocast_dtype == torch.float16:  # inference needs no scaler, but bf16 is safer where it exists
        autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    channels_last = use_channels_last(True, device, autocast_dtype)
    loader = _eval_loader(records, height, width, batch_size, num_workers)
    chunks = []
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            keypoints = batch["keypoints"].to(device) if needs_keypoints else None
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                feats = model(images, keypoints=keypoints)["features"].float()  # (B, D)
                if flip:
                    flipped_kp = flip_keypoints(keypoints, images.shape[-1]) if keypoints is not None else None
                    feats = (feats + model(images.flip(-1), keypoints=flipped_kp)["features"].float()) / 2
            chunks.append(feats.cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks)  # (N, D)


def evaluate(
    model: torch.nn.Module,
    split: ReIDSplit,
    height: int,
    width: int,
    batch_size: int = 128,
    flip: bool = False,
    metric: str = "euclidean",
    rerank: bool = False,
    rerank_k1: int = 20,
    rerank_k2: int = 6,
    rerank_lambda: float = 0.3,
    device: str | torch.device | None = "auto",
    num_workers: int = 0,
    max_rank: int = 50,
    progress: bool = True,
    return_features: bool = False,
    protocol: str = "market",
    amp: bool = True,
) -> dict:
    """Query vs gallery retrieval of ``split`` with ``model``: the dict of
    :func:`reidlab.engine.metrics.evaluate_ranking` (rank1, rank5, rank10, mAP,
    mINP as fractions, cmc, counts) plus ``metric``, ``rerank``, ``flip``.

    ``rerank=True`` applies k-reciprocal re-ranking (Zhong et al. 2017) to the
    distances. ``protocol="cuhk03"``: the CMC (rank-k) is CUHK03's classic
    single-gallery-shot CMC (10 seeded draws of one gallery image per identity);
    mAP and mINP stay on the full gallery. ``amp``: as :func:`extract_features` (False: float32). ``return_features=True`` adds ``query_features``,
    ``gallery_features`` and ``distmat`` (for plots).
    """
    from reidlab.engine.distance import pairwise_distance
    from reidlab.engine.metrics import evaluate_ranking

    if not split.query or not split.gallery:
        raise ValueError(f"evaluate: split {split.name!r} has an empty query or gallery set")
    if protocol not in ("market", "cuhk03"):
        raise ValueError(f"evaluate: protocol must be 'market' or 'cuhk03', got {protocol!r}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"evaluate: metric must be 'euclidean' or 'cosine', got {metric!r}")
    common = dict(height=height, width=width, batch_size=batch_size, flip=flip, device=device,
                  num_workers=num_workers, progress=progress, amp=amp)
    qf = extract_features(model, split.query, desc="query features", **common)
    gf = extract_features(model, split.gallery, desc="gallery features", **common)
    if rerank:
        from reidlab.engine.rerank import re_ranking

        if metric == "euclidean":
            distmat = re_ranking(qf, gf, k1=rerank_k1, k2=rerank_k2, lambda_value=rerank_lambda)
        else:  # re-rank the chosen metric's distances
            distmat = re_ranking(
                k1=rerank_k1, k2=rerank_k2, lambda_value=rerank_lambda,
                q_g_dist=pairwise_distance(qf, gf, metric=metric), q_q_dist=pairwise_distance(qf, qf, metric=metric),
                g_g_dist=pairwise_distance(gf, gf, metric=metric),
            )
    else:
        distmat = pairwise_distance(qf, gf, metric=metric)
    distmat = torch.as_tensor(distmat).float().cpu().numpy()
    q_pids = np.array([r.pid for r in split.query])
    g_pids = np.array([r.pid for r in split.gallery])
    q_camids = np.array([r.camid for r in split.query])
    g_camids = np.array([r.camid for r in split.gallery])
    if not np.isfinite(distmat).all():
        raise ValueError("evaluate: the model gave non-finite features (NaN/inf); the model's weights are broken")
    result = dict(evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank,
                                   single_gallery_shot=protocol == "cuhk03"))
    result.update(metric=metric, rerank=rerank, flip=flip, protocol=protocol)
    if return_features:
        result.update(query_features=qf, gallery_features=gf, distmat=distmat)
    return result


def chance_level(split: ReIDSplit, draws: int = 10, seed: int = 0) -> dict:
    """What a random ranking scores on ``split`` under the Market-1501 protocol.

    ``rank1`` is exact: the mean over queries with a valid match of
    (positives / valid gallery items), where valid excludes same-id same-camera
    images and junk, as :func:`~reidlab.engine.metrics.evaluate_ranking` does.
    ``mAP`` is the mean over ``draws`` random distance matrices (seeded).
    ``gallery_ids`` is kept for the one-line summary.
    """
    from reidlab.engine.metrics import evaluate_ranking

    q_pids = np.array([r.pid for r in split.query])
    g_pids = np.array([r.pid for r in split.gallery])
    q_camids = np.array([r.camid for r in split.query])
    g_camids = np.array([r.camid for r in split.gallery])
    same_id = q_pids[:, None] == g_pids[None, :]  # (Q, G)
    valid = ~(same_id & (q_camids[:, None] == g_camids[None, :])) & (g_pids[None, :] >= 0)  # (Q, G)
    positives = (same_id & valid).sum(axis=1)
    has_match = positives > 0
    rank1 = float((positives[has_match] / valid.sum(axis=1)[has_match]).mean()) if has_match.any() else 0.0
    rng = np.random.default_rng(seed)
    maps = [
        evaluate_ranking(rng.random(same_id.shape, dtype=np.float32), q_pids, g_pids, q_camids, g_camids)["mAP"]
        for _ in range(draws)
    ]
    return {"gallery_ids": len({r.pid for r in split.gallery}), "rank1": rank1, "mAP": float(np.mean(maps))}


@torch.no_grad()
def attribute_accuracy(
    model: torch.nn.Module,
    records: Sequence[ImageRecord],
    attribute_spec,
    majority_from: Sequence[ImageRecord],
    height: int,
    width: int,
    batch_size: int = 64,
    device: str | torch.device | None = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Per-attribute accuracy of an attribute model on ``records`` against the majority class.

    The model must give ``explain(images, keypoints).attribute_predictions`` ``(B, K)``
    (MSRA does). The majority class of each attribute is counted on
    ``majority_from`` (the training records), so the baseline sees no test labels.
    Unknown labels (-1) are left out. One row per attribute: ``accuracy``,
    ``majority_accuracy``, ``known`` (labelled images).
    """
    from reidlab.data.dataset import ReIDDataset
    from reidlab.data.transforms import build_transforms

    if not hasattr(model, "explain"):
        raise TypeError(f"attribute_accuracy: {type(model).__name__} has no explain() with attribute predictions")
    labelled = [r for r in records if r.attributes is not None]
    if not labelled:
        raise ValueError("attribute_accuracy: none of the records has attribute labels")
    device = resolve_device(device)
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(
        ReIDDataset(labelled, build_transforms(height, width, train=False), attribute_spec), batch_size=batch_size
    )
    predictions, targets = [], []
    for batch in tqdm(loader, desc="attributes", disable=not progress, leave=False):
        explanation = model.explain(batch["image"].to(device), batch["keypoints"].to(device))
        if explanation.attribute_predictions is None:
            raise ValueError("attribute_accuracy: the model gives no attribute predictions (built without ARM?)")
        predictions.append(explanation.attribute_predictions.cpu())
        targets.append(batch["attributes"])
    predicted, target = torch.cat(predictions).numpy(), torch.cat(targets).numpy()  # (N, K), (N, K)
    train = np.stack([r.attributes for r in majority_from if r.attributes is not None])  # (M, K)
    rows = []
    for k, name in enumerate(attribute_spec.names):
        known = target[:, k] >= 0
        train_known = train[:, k][train[:, k] >= 0]
        majority = int(np.bincount(train_known).argmax()) if len(train_known) else 0
        rows.append({
            "attribute": name,
            "accuracy": float((predicted[known, k] == target[known, k]).mean()) if known.any() else float("nan"),
            "majority_accuracy": float((target[known, k] == majority).mean()) if known.any() else float("nan"),
            "known": int(known.sum()),
        })
    return pd.DataFrame(rows).set_index("attribute")


SCALAR_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def results_frame(results: dict[str, dict], percent: bool = True) -> pd.DataFrame:
    """One row per named evaluation result with rank-1/5/10, mAP, mINP (in % by default)."""
    rows = []
    for name, result in results.items():
        row = {"run": name}
        for key in SCALAR_KEYS:
            if key in result:
                row[key] = float(result[key]) * (100.0 if percent else 1.0)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")
