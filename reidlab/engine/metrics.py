"""Ranking metrics for re-ID: CMC, mAP and mINP under the Market-1501 protocol.

Protocol (Zheng et al. 2015, as in the official Market-1501 code and torchreid):

- for a query, gallery images of the same identity *and* the same camera are excluded;
- junk gallery images (pid ``-1``) are excluded for every query;
- distractors (pid ``0``) are ordinary negatives;
- queries with no valid positive left are not scored (``num_skipped_queries``).

Ranking order: ascending distance; equal distances are ordered by gallery index, as a
stable sort would. ``AP = mean_j (j / rank_j)`` over the query's positives (ranks among
the valid gallery items), CMC(k) = 1 if the first positive is within the top k, and
``INP = num_positives / rank_of_last_positive`` (Ye et al., TPAMI 2021).

Speed. Every figure is a function of the ranks of each query's (few) positives among its
valid gallery items, so no row is ever sorted. Per chunk of queries: keep only the items
at or below the query's farthest positive (one numpy pass; the rest cannot change any
rank), map their distances by a monotone affine map to bins spanning the positives, and
histogram them per row (``bincount``): a positive's rank is the count of items in lower
bins plus the few items sharing its bin, which are compared exactly on (distance, gallery
index). That is the stable-sort order, ties included, so the result equals the plain
per-query definition exactly (tests/test_metrics.py holds it to a reference). About 0.2 s
for Market-1501 (3,368 x 15,913) on two CPU cores; see ``benchmarks/bench_metrics.py``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from reidlab.progress import tqdm

JUNK_PID = -1


def _as_tensor(name: str, value, device=None) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except Exception as error:  # noqa: BLE001 - re-raised with the argument's name
            raise TypeError(f"evaluate_ranking: {name} must be a numpy array or torch tensor") from error
    return tensor if device is None else tensor.to(device)


def _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids):
    distmat = _as_tensor("distmat", distmat)
    if distmat.dim() != 2:
        raise ValueError(f"evaluate_ranking: distmat must be (num_query, num_gallery), got {tuple(distmat.shape)}")
    device = distmat.device
    num_query, num_gallery = distmat.shape
    if num_query == 0 or num_gallery == 0:
        raise ValueError(f"evaluate_ranking: distmat is empty, shape {tuple(distmat.shape)}")
    labels = {}
    for name, value, size in (
        ("q_pids", q_pids, num_query),
        ("g_pids", g_pids, num_gallery),
        ("q_camids", q_camids, num_query),
        ("g_camids", g_camids, num_gallery),
    ):
        tensor = _as_tensor(name, value, device).reshape(-1)
        if tensor.numel() != size:
            raise ValueError(f"evaluate_ranking: {name} has {tensor.numel()} entries, distmat needs {size}")
        if tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise ValueError(f"evaluate_ranking: {name} must hold integers, got {tensor.dtype}")
        labels[name] = tensor.long()
    if distmat.is_floating_point():
        if distmat.dtype in (torch.float16, torch.bfloat16):
            distmat = distmat.float()  # exact, keeps the order; CPU kernels want float32
    else:
        distmat = distmat.double()  # integer distances: exact in float64
    return distmat, labels["q_pids"], labels["g_pids"], labels["q_camids"], labels["g_camids"]


def _junk_mask(q_junk, num_query: int, num_gallery: int, device) -> torch.Tensor | None:
    """Extra per-query junk as a (Q, G) bool tensor (from a mask or a list of index arrays)."""
    if q_junk is None:
        return None
    if isinstance(q_junk, (list, tuple)):
        if len(q_junk) != num_query:
            raise ValueError(f"evaluate_ranking: q_junk has {len(q_junk)} entries for {num_query} queries")
        mask = torch.zeros(num_query, num_gallery, dtype=torch.bool)
        for row, indices in enumerate(q_junk):
            mask[row, torch.as_tensor(np.asarray(indices, dtype=np.int64))] = True
        return mask.to(device)
    mask = _as_tensor("q_junk", q_junk, device)
    if mask.shape != (num_query, num_gallery):
        raise ValueError(f"evaluate_ranking: q_junk must be (Q, G)=({num_query}, {num_gallery}), got {tuple(mask.shape)}")
    return mask.bool()


def query_statistics(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_junk=None,
    chunk_size: int | None = None,
    num_bins: int | None = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Per-query figures: ``num_positives``, ``first_rank`` (1-based, 0 when no positive),
    ``last_rank``, ``ap`` and ``inp`` (NaN for queries without a valid positive).

    ``q_junk``: optional extra junk per query, a (Q, G) bool mask or a list of index
    arrays; those gallery items are excluded like pid -1 items.
    """
    distmat, q_pids, g_pids, q_camids, g_camids = _check_inputs(distmat, q_pids, g_pids, q_camids, g_camids)
    device = distmat.device
    num_query, num_gallery = distmat.shape
    extra_junk = _junk_mask(q_junk, num_query, num_gallery, device)

    # Gallery grouped by identity: a query's same-pid items (its positives and its
    # same-camera exclusions) are one contiguous slice of `gallery_by_pid`.
    gallery_by_pid = torch.argsort(g_pids, stable=True)
    unique_pids, group_sizes = torch.unique_consecutive(g_pids[gallery_by_pid], return_counts=True)
    group_starts = torch.cumsum(group_sizes, 0) - group_sizes
    slot = torch.searchsorted(unique_pids, q_pids).clamp_max(len(unique_pids) - 1)
    has_group = (unique_pids[slot] == q_pids) & (q_pids != JUNK_PID)
    q_group_start = torch.where(has_group, group_starts[slot], 0)
    q_group_size = torch.where(has_group, group_sizes[slot], 0)

    num_positives = torch.zeros(num_query, dtype=torch.long)
    first_rank = torch.zeros(num_query, dtype=torch.long)
    last_rank = torch.zeros(num_query, dtype=torch.long)
    ap = torch.full((num_query,), float("nan"), dtype=torch.float64)
    inp = torch.full((num_query,), float("nan"), dtype=torch.float64)

    if chunk_size is None:
        chunk_size = max(1, min(num_query, (1 << 20) // max(num_gallery, 1)))  # ~1M entries: cache-sized
    # The per-chunk work is small and memory-bound: one CPU thread is as fast, and on a
    # busy machine OpenMP's thread barriers made it 4x slower. Restored afterwards.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        _all_chunks(distmat, q_pids, q_camids, g_pids, g_camids, gallery_by_pid, q_group_start, q_group_size,
                    extra_junk, num_bins, chunk_size, show_progress,
                    (num_positives, first_rank, last_rank, ap, inp))
    finally:
        torch.set_num_threads(threads)
    return {
        "num_positives": num_positives.numpy(),
        "first_rank": first_rank.numpy(),
        "last_rank": last_rank.numpy(),
        "ap": ap.numpy(),
        "inp": inp.numpy(),
    }


def _all_chunks(distmat, q_pids, q_camids, g_pids, g_camids, gallery_by_pid, q_group_start, q_group_size,
                extra_junk, num_bins, chunk_size, show_progress, targets):
    num_query = distmat.shape[0]
    starts = range(0, num_query, chunk_size)
    for start in tqdm(starts, desc="ranking", disable=not show_progress, leave=False):
        rows = slice(start, min(start + chunk_size, num_query))
        stats = _chunk_statistics(
            distmat[rows], q_pids[rows], q_camids[rows], g_pids, g_camids,
            gallery_by_pid, q_group_start[rows], q_group_size[rows],
            None if extra_junk is None else extra_junk[rows], num_bins,
        )
        for name, target in zip(("num_positives", "first_rank", "last_rank", "ap", "inp"), targets):
            target[rows] = stats[name].cpu()


def _at_or_below(dist: torch.Tensor, threshold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices and values of ``dist[r, j] <= threshold[r]``, in row-major order.

    On CPU numpy does this pass about 5x faster than torch (bool comparison and
    nonzero kernels); the arrays share memory, so nothing is copied.
    """
    if dist.device.type == "cpu":
        array = dist.numpy().reshape(-1)
        flat = np.flatnonzero((dist.numpy() <= threshold.numpy()[:, None]).reshape(-1))
        return torch.from_numpy(flat), torch.from_numpy(array[flat])
    flat = torch.nonzero((dist <= threshold[:, None]).view(-1)).squeeze(1)
    return flat, dist.view(-1)[flat]


def _chunk_statistics(dist, q_pids, q_camids, g_pids, g_camids, gallery_by_pid,
                      group_start, group_size, extra_junk, num_bins):
    """Ranks of positives for a chunk of queries without sorting rows (see module docstring)."""
    device = dist.device
    dist = dist.contiguous()
    num_rows, num_gallery = dist.shape
    smallest, largest = torch.aminmax(dist)  # NaN propagates
    if not (bool(torch.isfinite(smallest)) and bool(torch.isfinite(largest))):
        raise ValueError("evaluate_ranking: distmat holds NaN or infinite values")
    # Same-pid gallery items of each query, padded: (C, S).
    width = max(int(group_size.max()), 1)
    offsets = torch.arange(width, device=device)
    in_group = offsets[None, :] < group_size[:, None]  # (C, S)
    group_index = gallery_by_pid[(group_start[:, None] + offsets[None, :]).clamp_max(num_gallery - 1)]  # (C, S)
    same_camera = g_camids[group_index] == q_camids[:, None]  # (C, S)
    positive = in_group & ~same_camera  # (C, S)
    if extra_junk is not None:
        positive &= ~extra_junk.gather(1, group_index)
    num_positives = positive.sum(1)  # (C,)
    has_positive = num_positives > 0
    positive_sorted, order = dist.gather(1, group_index).masked_fill(~positive, float("inf")).sort(dim=1, stable=True)  # (C, S)
    positive_column = group_index.gather(1, order)  # (C, S) gallery index of each sorted positive
    lowest = torch.where(has_positive, positive_sorted[:, 0], 0.0)  # (C,)
    highest = positive_sorted.gather(1, (num_positives - 1).clamp_min(0)[:, None])[:, 0]  # (C,)
    highest = torch.where(has_positive, highest, float("-inf"))

    # Only valid items at or below a query's farthest positive affect its ranks.
    flat, item_distance = _at_or_below(dist, highest)  # (A,) flat indices into the chunk, distances
    item_rows = torch.div(flat, num_gallery, rounding_mode="floor")  # (A,)
    item_columns = flat - item_rows * num_gallery  # (A,)
    # (index_select rather than x[index]: the latter is ~15x slower on CPU.)
    item_pid = g_pids.index_select(0, item_columns)
    same_pid = item_pid == q_pids.index_select(0, item_rows)
    same_camera = g_camids.index_select(0, item_columns) == q_camids.index_select(0, item_rows)
    valid = (item_pid != JUNK_PID) & ~(same_pid & same_camera)
    if extra_junk is not None:
        valid &= ~extra_junk.reshape(-1).index_select(0, flat)
    keep = torch.nonzero(valid).squeeze(1)
    flat, item_distance, item_rows, item_positive = (
        x.index_select(0, keep) for x in (flat, item_distance, item_rows, same_pid))

    # Monotone map of each survivor's distance to a bin: bin(d) < bin(p) implies d < p.
    # About 8-16 survivors per bin: few exactly-compared items, small per-row tables.
    if num_bins is None:
        most = int(torch.bincount(item_rows, minlength=1).max()) if len(item_rows) else 1
        num_bins = int(min(max(16, 1 << max(most // 8, 1).bit_length()), 1 << 16))
    span = highest - lowest
    span = torch.where(span > 0, span, lowest.abs().clamp_min(1e-6) * 1e-3)
    scale = (num_bins / span.where(has_positive, torch.ones_like(span))).clamp_(max=1e30)  # (C,) finite: no 0 * inf
    bins_per_row = num_bins + 2
    # Bin 0 holds items below the nearest positive, which itself lands in bin 1.
    bins = (item_distance - lowest.index_select(0, item_rows)).mul_(scale.index_select(0, item_rows))
    bins = bins.add_(1.0).clamp_(0, num_bins + 1).to(torch.int64)
    bins += item_rows * bins_per_row  # (A,) flat bin ids
    histogram = torch.bincount(bins, minlength=num_rows * bins_per_row).view(num_rows, bins_per_row)

    # Bins holding a positive are "ambiguous": their items are compared exactly.
    positive_bins = bins.index_select(0, torch.nonzero(item_positive).squeeze(1))
    ambiguous = torch.zeros(num_rows * bins_per_row, dtype=torch.bool, device=device)
    ambiguous[positive_bins] = True
    positives_in_bin = torch.zeros(num_rows * bins_per_row, dtype=torch.long, device=device)
    positives_in_bin.index_add_(0, positive_bins, torch.ones_like(positive_bins))
    positives_in_bin = positives_in_bin.view(num_rows, bins_per_row)
    # In a positive-free bin every item has exactly (positives in lower bins) positives <= it.
    positives_below = positives_in_bin.cumsum(1) - positives_in_bin  # (C, bins)
    # count[r, k] = number of valid items with exactly k positives <= their distance.
    count = torch.zeros(num_rows, width + 1, dtype=torch.long, device=device)
    count.scatter_add_(1, positives_below.clamp_max(width), histogram.masked_fill(ambiguous.view(num_rows, -1), 0))
    # Items sharing a bin with a positive: order (distance, gallery index) exactly, as a
    # stable sort would. Positives are sorted by (distance, index) (group_index is
    # index-ordered and the sort is stable), so "positives <= item" is a plain count.
    exact = torch.nonzero(ambiguous.index_select(0, bins)).squeeze(1)  # (E,)
    exact_rows = item_rows.index_select(0, exact)  # (E,)
    exact_distance = item_distance.index_select(0, exact)[:, None]  # (E, 1)
    exact_column = (flat.index_select(0, exact) - exact_rows * num_gallery)[:, None]  # (E, 1) gallery index
    sequence = positive_sorted.index_select(0, exact_rows)  # (E, S)
    sequence_column = positive_column.index_select(0, exact_rows)  # (E, S)
    at_or_below = (sequence < exact_distance) | ((sequence == exact_distance) & (sequence_column <= exact_column))
    count.index_put_((exact_rows, at_or_below.sum(1).clamp_max(width)), torch.ones_like(exact_rows), accumulate=True)

    ranks = (count.cumsum(1)[:, :width] + 1).double()  # (C, S) 1 + valid items below the k-th positive
    real = offsets[None, :] < num_positives[:, None]  # (C, S)
    precision = torch.where(real, (offsets[None, :] + 1).double() / ranks, 0.0)  # (C, S)
    nan = torch.full_like(ranks[:, 0], float("nan"))
    last = ranks.gather(1, (num_positives - 1).clamp_min(0)[:, None])[:, 0]
    return {
        "num_positives": num_positives,
        "first_rank": torch.where(has_positive, ranks[:, 0].long(), 0),
        "last_rank": torch.where(has_positive, last.long(), 0),
        "ap": torch.where(has_positive, precision.sum(1) / num_positives.clamp_min(1), nan),
        "inp": torch.where(has_positive, num_positives / last, nan),
    }


def _single_gallery_shot_cmc(distmat, q_pids, g_pids, q_camids, g_camids, extra_junk, query_rows,
                             max_rank, repeats, seed):
    """CUHK03 classic single-gallery-shot CMC (open-reid's ``cmc(single_gallery_shot=True)``).

    For each scored query and each of ``repeats`` draws: among its valid gallery items,
    keep one random image per identity; the CMC counts the rank of the kept positive
    among the kept images (stable order). Averaged over draws, then over queries.
    """
    rng = np.random.default_rng(seed)
    distances_all = distmat.detach().cpu().numpy() if isinstance(distmat, torch.Tensor) else np.asarray(distmat)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    cmc = np.zeros(max_rank)
    for row in query_rows:
        same_pid = g_pids == q_pids[row]
        valid = (g_pids != JUNK_PID) & ~(same_pid & (g_camids == q_camids[row]))
        if extra_junk is not None:
            valid &= ~extra_junk[row]
        candidates = np.flatnonzero(valid)
        _, identity = np.unique(g_pids[candidates], return_inverse=True)
        for _ in range(repeats):
            order = np.lexsort((rng.random(len(candidates)), identity))  # by identity, random within
            boundary = np.r_[True, identity[order][1:] != identity[order][:-1]]
            kept = np.sort(candidates[order[boundary]])  # one per identity, in gallery order
            kept_distance = distances_all[row, kept]
            rank = int(np.flatnonzero(same_pid[kept][np.argsort(kept_distance, kind="stable")])[0]) + 1
            if rank <= max_rank:
                cmc[rank - 1:] += 1.0 / repeats
    return cmc / max(len(query_rows), 1)


def evaluate_ranking(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    single_gallery_shot: bool = False,
    q_junk=None,
    repeats: int = 10,
    seed: int = 0,
    chunk_size: int | None = None,
    show_progress: bool = False,
) -> dict:
    """CMC, mAP and mINP of a (Q, G) distance matrix under the Market-1501 protocol.

    Inputs may be numpy arrays or torch tensors (on any device; the work runs there).
    Returns ``{"cmc": (max_rank,) np.ndarray, "rank1", "rank5", "rank10", "mAP", "mINP"
    (fractions 0..1), "num_valid_queries", "num_skipped_queries"}``.

    ``single_gallery_shot=True``: the CUHK03 classic protocol for the CMC (and rank-k):
    ``repeats`` random draws of one gallery image per identity (numpy generator seeded by
    ``seed``); mAP and mINP are still computed on the full gallery, as in open-reid,
    because single-shot sampling does not define them.
    """
    if max_rank < 1:
        raise ValueError(f"evaluate_ranking: max_rank must be >= 1, got {max_rank}")
    stats = query_statistics(distmat, q_pids, g_pids, q_camids, g_camids, q_junk=q_junk,
                             chunk_size=chunk_size, show_progress=show_progress)
    scored = stats["num_positives"] > 0
    num_valid = int(scored.sum())
    if num_valid == 0:
        raise ValueError("evaluate_ranking: no query has a valid positive in the gallery "
                         "(same id in another camera); check q_pids/g_pids and camids")
    first = stats["first_rank"][scored]
    if single_gallery_shot:
        to_numpy = lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # noqa: E731
        junk = None if q_junk is None else _junk_mask(q_junk, len(scored), len(to_numpy(g_pids)), "cpu").numpy()
        cmc = _single_gallery_shot_cmc(distmat, to_numpy(q_pids).reshape(-1), to_numpy(g_pids).reshape(-1),
                                       to_numpy(q_camids).reshape(-1), to_numpy(g_camids).reshape(-1), junk,
                                       np.flatnonzero(scored), max(max_rank, 10), repeats, seed)
    else:
        cmc = np.cumsum(np.bincount(np.minimum(first, max(max_rank, 10) + 1) - 1, minlength=max(max_rank, 10) + 1))
        cmc = cmc[: max(max_rank, 10)] / num_valid
    return {
        "cmc": cmc[:max_rank].astype(np.float64),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[4]),
        "rank10": float(cmc[9]),
        "mAP": float(np.mean(stats["ap"][scored])),
        "mINP": float(np.mean(stats["inp"][scored])),
        "num_valid_queries": num_valid,
        "num_skipped_queries": int(len(scored) - num_valid),
    }


def results_frame(results: dict, **columns) -> pd.DataFrame:
    """One-row DataFrame of the scalar figures (``cmc`` left out); ``columns`` are
    extra labels put first (e.g. ``model="mbgn", rerank=True``)."""
    row = dict(columns)
    for key, value in results.items():
        if key == "cmc":
            continue
        row[key] = value.item() if isinstance(value, (np.generic, torch.Tensor)) else value
    return pd.DataFrame([row])
