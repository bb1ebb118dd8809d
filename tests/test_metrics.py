"""Ranking metrics: the fast (sort-free) evaluate_ranking against a plain per-query
reference written here (stable argsort per query, loops), plus hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reidlab.engine.distance import pairwise_distance
from reidlab.engine.metrics import evaluate_ranking, query_statistics, results_frame


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Market-1501 protocol, one query at a time, stable sort (ties by gallery index)."""
    cmc_sum, aps, inps, skipped = np.zeros(max_rank), [], [], 0
    for i in range(len(q_pids)):
        valid = (g_pids != -1) & ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        order = np.argsort(distmat[i][valid], kind="stable")
        matches = g_pids[valid][order] == q_pids[i]
        if not matches.any():
            skipped += 1
            continue
        hits = 0
        precisions = []
        for position, match in enumerate(matches):
            if match:
                hits += 1
                precisions.append(hits / (position + 1))
        positions = [p for p, m in enumerate(matches) if m]
        first, last = positions[0], positions[-1]
        cmc_sum[first:] += 1
        aps.append(sum(precisions) / len(precisions))
        inps.append(len(positions) / (last + 1))
    n = len(aps)
    return {"cmc": cmc_sum / max(n, 1), "mAP": np.mean(aps) if n else np.nan, "mINP": np.mean(inps) if n else np.nan,
            "num_valid_queries": n, "num_skipped_queries": skipped}


def assert_same(got, expected):
    assert got["num_valid_queries"] == expected["num_valid_queries"]
    assert got["num_skipped_queries"] == expected["num_skipped_queries"]
    np.testing.assert_allclose(got["cmc"], expected["cmc"][: len(got["cmc"])], atol=1e-12)
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    assert got["mINP"] == pytest.approx(expected["mINP"], abs=1e-12)
    assert got["rank1"] == pytest.approx(expected["cmc"][0], abs=1e-12)


def random_case(seed, num_query=40, num_gallery=300, num_ids=25, num_cams=4, integer=False, tiny=False):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids, num_query)
    g_pids = rng.integers(-1, num_ids, num_gallery)  # includes junk (-1) and distractors (0)
    q_camids = rng.integers(0, num_cams, num_query)
    g_camids = rng.integers(0, num_cams, num_gallery)
    if integer:
        distmat = rng.integers(0, 6, (num_query, num_gallery)).astype(np.float32)  # many ties
    elif tiny:  # distances one float32 step apart: bins far narrower than usual
        distmat = np.float32(1.0) + rng.integers(0, 40, (num_query, num_gallery)).astype(np.float32) * np.float32(2**-23)
    else:
        distmat = rng.random((num_query, num_gallery)).astype(np.float32)
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("kind", ["float", "integer", "tiny"])
@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_on_random_cases(seed, kind):
    case = random_case(seed, integer=kind == "integer", tiny=kind == "tiny")
    assert kind != "tiny" or len(np.unique(case[0])) > 20
    got = evaluate_ranking(*case, max_rank=50, chunk_size=7)
    assert_same(got, reference(*case, max_rank=50))
    assert got["cmc"].shape == (50,)


def test_realistic_features_and_torch_inputs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    q_pids, g_pids = rng.integers(1, 30, 60), rng.integers(0, 30, 500)
    q_camids, g_camids = rng.integers(0, 6, 60), rng.integers(0, 6, 500)
    qf = torch.tensor(centres[q_pids] + rng.normal(size=(60, 16)) * 0.8, dtype=torch.float32)
    gf = torch.tensor(centres[g_pids] + rng.normal(size=(500, 16)) * 0.8, dtype=torch.float32)
    distmat = pairwise_distance(qf, gf, chunk_size=13)
    expected = reference(distmat.numpy(), q_pids, g_pids, q_camids, g_camids)
    got = evaluate_ranking(distmat, torch.as_tensor(q_pids), torch.as_tensor(g_pids), q_camids, g_camids)
    assert_same(got, expected)
    assert 0.0 < got["mINP"] <= got["mAP"] <= 1.0
    got16 = evaluate_ranking(distmat.half(), q_pids, g_pids, q_camids, g_camids)  # half precision accepted
    assert_same(got16, reference(distmat.half().float().numpy(), q_pids, g_pids, q_camids, g_camids))


def test_hand_made_case_with_ties_junk_and_distractors():
    # One query (pid 1, camera 0). Gallery:      0    1    2    3    4    5    6
    g_pids = np.array([1, 0, 1, -1, 2, 1, 1])
    g_camids = np.array([0, 1, 1, 1, 1, 2, 1])
    distmat = np.array([[0.0, 0.1, 0.2, 0.05, 0.2, 0.3, 0.9]])
    # Valid (index 0: same id & camera, index 3: junk) in stable order:
    # 1 (0.1, distractor), 2 (0.2, pos), 4 (0.2, neg; tie after 2), 5 (0.3, pos), 6 (0.9, pos)
    # positives at ranks 2, 4, 5 -> AP = (1/2 + 2/4 + 3/5) / 3, INP = 3 / 5, first hit at rank 2.
    got = evaluate_ranking(distmat, [1], g_pids, [0], g_camids, max_rank=5)
    assert got["mAP"] == pytest.approx((0.5 + 0.5 + 0.6) / 3)
    assert got["mINP"] == pytest.approx(0.6)
    np.testing.assert_array_equal(got["cmc"], [0, 1, 1, 1, 1])
    # Swap the tie: the negative now comes first (lower gallery index).
    g_pids_swapped = g_pids.copy()
    g_pids_swapped[[2, 4]] = g_pids[[4, 2]]
    got = evaluate_ranking(distmat, [1], g_pids_swapped, [0], g_camids, max_rank=5)
    assert got["mAP"] == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3)


def test_queries_without_matches_are_skipped_and_counted():
    distmat = np.random.default_rng(0).random((3, 4))
    g_pids, g_camids = np.array([5, 5, 7, -1]), np.array([0, 1, 0, 1])
    # query 0: pid 5 cam 0 -> positive at index 1; query 1: pid 7 cam 0 -> only same-camera
    # match (excluded); query 2: pid 9 -> no match at all.
    got = evaluate_ranking(distmat, [5, 7, 9], g_pids, [0, 0, 0], g_camids, max_rank=3)
    assert got["num_valid_queries"] == 1 and got["num_skipped_queries"] == 2
    stats = query_statistics(distmat, [5, 7, 9], g_pids, [0, 0, 0], g_camids)
    np.testing.assert_array_equal(stats["num_positives"], [1, 0, 0])
    assert np.isnan(stats["ap"][1]) and np.isnan(stats["ap"][2])
    with pytest.raises(ValueError, match="no query has a valid positive"):
        evaluate_ranking(distmat, [7, 9, 9], g_pids, [0, 0, 0], g_camids)


def test_all_junk_rows_and_extra_junk():
    distmat = np.array([[0.3, 0.1, 0.2, 0.4], [0.5, 0.6, 0.1, 0.2]])
    g_pids, g_camids = np.array([-1, -1, 3, 3]), np.array([0, 1, 1, 2])
    got = evaluate_ranking(distmat, [1, 3], g_pids, [0, 0], g_camids, max_rank=2)
    assert got["num_valid_queries"] == 1 and got["mAP"] == 1.0
    # Extra junk hides gallery item 2 for query 1: the positive at index 3 stays (rank 1).
    q_junk = np.zeros((2, 4), dtype=bool)
    q_junk[1, 2] = True
    assert evaluate_ranking(distmat, [1, 3], g_pids, [0, 0], g_camids, q_junk=q_junk)["mAP"] == 1.0
    with pytest.raises(ValueError, match="no query"):  # list form: query 1 loses both positives
        evaluate_ranking(distmat, [1, 3], g_pids, [0, 0], g_camids, q_junk=[[], [2, 3]])
    rng = np.random.default_rng(3)
    case = random_case(3)
    junk = rng.random(case[0].shape) < 0.2
    distmat, q_pids, g_pids, q_camids, g_camids = case
    got = evaluate_ranking(*case, q_junk=[np.flatnonzero(row) for row in junk], max_rank=10)
    # Reference: per query, junk items become pid -1.
    rows = [reference(distmat[i:i + 1], q_pids[i:i + 1], np.where(junk[i], -1, g_pids), q_camids[i:i + 1], g_camids, 10)
            for i in range(len(q_pids))]
    valid = [r for r in rows if r["num_valid_queries"]]
    assert got["num_valid_queries"] == len(valid)
    assert got["mAP"] == pytest.approx(np.mean([r["mAP"] for r in valid]), abs=1e-12)
    assert got["mINP"] == pytest.approx(np.mean([r["mINP"] for r in valid]), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12), st.integers(1, 40), st.integers(1, 5), st.integers(1, 3),
    st.integers(1, 4), st.integers(0, 2**31 - 1), st.integers(1, 12),
)
def test_property_matches_reference(num_query, num_gallery, num_ids, num_cams, distance_levels, seed, chunk_size):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(0, num_ids + 1, num_query)
    g_pids = rng.integers(-1, num_ids + 1, num_gallery)
    q_camids, g_camids = rng.integers(0, num_cams, num_query), rng.integers(0, num_cams, num_gallery)
    distmat = rng.integers(0, distance_levels + 1, (num_query, num_gallery)).astype(np.float64)  # many ties
    expected = reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
    if expected["num_valid_queries"] == 0:
        with pytest.raises(ValueError):
            evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10)
        return
    assert_same(evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10, chunk_size=chunk_size), expected)
    as_int = distmat.astype(np.int64)  # integer distance matrices are accepted too
    assert_same(evaluate_ranking(as_int, q_pids, g_pids, q_camids, g_camids, max_rank=10), expected)


def sgs_expected_cmc(distmat, q_pid, q_camid, g_pids, g_camids, max_rank):
    """Exact expectation of the single-gallery-shot CMC for one query: enumerate every
    choice of one valid gallery image per identity (tiny galleries only)."""
    import itertools

    valid = (g_pids != -1) & ~((g_pids == q_pid) & (g_camids == q_camid))
    groups = [np.flatnonzero(valid & (g_pids == pid)) for pid in np.unique(g_pids[valid])]
    cmc, choices = np.zeros(max_rank), list(itertools.product(*groups))
    for choice in choices:
        kept = np.sort(np.array(choice))
        order = np.argsort(distmat[kept], kind="stable")
        rank = int(np.flatnonzero(g_pids[kept][order] == q_pid)[0])
        cmc[rank:] += 1 / len(choices)
    return cmc


def test_single_gallery_shot_against_exact_expectation():
    rng = np.random.default_rng(5)
    g_pids = np.array([1, 1, 1, 2, 2, 3, 3, 0, 0, -1])
    g_camids = np.array([0, 1, 2, 1, 2, 1, 0, 1, 2, 1])
    distmat = rng.random((3, 10))
    q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 0, 2])
    got = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5, single_gallery_shot=True,
                           repeats=3000, seed=1)
    expected = np.mean([sgs_expected_cmc(distmat[i], q_pids[i], q_camids[i], g_pids, g_camids, 5) for i in range(3)], 0)
    np.testing.assert_allclose(got["cmc"], expected, atol=0.03)
    again = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5, single_gallery_shot=True,
                             repeats=3000, seed=1)
    np.testing.assert_array_equal(got["cmc"], again["cmc"])  # seeded
    full = evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5)
    assert got["mAP"] == full["mAP"] and got["mINP"] == full["mINP"]  # full-gallery figures
    assert not np.allclose(got["cmc"], full["cmc"])  # the sampling protocol is not the multi-shot one


def test_errors_and_results_frame():
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(1, num_query=5, num_gallery=30)
    with pytest.raises(ValueError, match="g_pids"):
        evaluate_ranking(distmat, q_pids, g_pids[:-1], q_camids, g_camids)
    bad = distmat.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(bad, q_pids, g_pids, q_camids, g_camids)
    frame = results_frame(evaluate_ranking(distmat, q_pids, g_pids, q_camids, g_camids), model="x")
    assert list(frame.columns[:2]) == ["model", "rank1"] and len(frame) == 1 and "cmc" not in frame


def test_pairwise_distance_against_plain_formulas():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
    euclidean = np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))
    np.testing.assert_allclose(pairwise_distance(q, g, chunk_size=3).numpy(), euclidean, atol=1e-5)
    cosine = 1 - (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (g / np.linalg.norm(g, axis=1, keepdims=True)).T
    np.testing.assert_allclose(pairwise_distance(q, g, metric="cosine", chunk_size=2).numpy(), cosine, atol=1e-5)
    assert pairwise_distance(torch.tensor(q).half(), torch.tensor(g).half()).dtype == torch.float32
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(q, g, metric="manhattan")
