"""k-reciprocal re-ranking: the sparse implementation against a plain dense transcription
of the authors' reference code (Zhong et al. 2017), written here."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.engine.distance import pairwise_distance
from reidlab.engine.rerank import re_ranking


def dense_reference(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value):
    """The original algorithm: full N x N matrices, argsort of every row, per-image loops."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = original_dist.shape[0]
    for i in range(all_num):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            c_forward = initial_rank[candidate, : int(np.around(k1 / 2.0)) + 1]
            c_backward = initial_rank[c_forward, : int(np.around(k1 / 2.0)) + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2.0 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        nonzero = np.where(V[i, :] != 0)[0]
        for k in nonzero:
            images = inv_index[k]
            temp_min[0, images] = temp_min[0, images] + np.minimum(V[i, k], V[images, k])
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def clustered_features(num_query, num_gallery, dim=16, num_ids=10, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=generator) * 2
    q_ids = torch.randint(0, num_ids, (num_query,), generator=generator)
    g_ids = torch.randint(0, num_ids, (num_gallery,), generator=generator)
    qf = centres[q_ids] + torch.randn(num_query, dim, generator=generator)
    gf = centres[g_ids] + torch.randn(num_gallery, dim, generator=generator)
    return qf, gf


def distances(qf, gf):
    return tuple(pairwise_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf)))


@pytest.mark.parametrize("k1,k2,lambda_value,seed", [(6, 3, 0.3, 0), (6, 1, 0.3, 1), (5, 2, 0.5, 2), (20, 6, 0.3, 3)])
def test_matches_dense_reference_from_distances(k1, k2, lambda_value, seed):
    qf, gf = clustered_features(30, 80, seed=seed)
    qg, qq, gg = distances(qf, gf)
    expected = dense_reference(qg, qq, gg, k1, k2, lambda_value)
    got = re_ranking(q_g_dist=qg, q_q_dist=qq, g_g_dist=gg, k1=k1, k2=k2, lambda_value=lambda_value, chunk_size=17)
    assert got.shape == (30, 80) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_features_path_matches_distance_path():
    qf, gf = clustered_features(30, 80, dim=32, seed=4)
    qg, qq, gg = distances(qf, gf)
    expected = dense_reference(qg, qq, gg, 6, 3, 0.3)
    got = re_ranking(qf, gf, k1=6, k2=3, lambda_value=0.3, chunk_size=25)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert not np.allclose(got, re_ranking(qf, gf, k1=6, k2=3, lambda_value=1.0))  # re-ranking changes something


def test_lambda_one_returns_the_normalised_original_distance():
    qf, gf = clustered_features(12, 40, seed=5)
    qg, qq, gg = distances(qf, gf)
    squared = np.concatenate([qq, qg], axis=1) ** 2
    got = re_ranking(q_g_dist=qg, q_q_dist=qq, g_g_dist=gg, k1=6, k2=3, lambda_value=1.0)
    np.testing.assert_allclose(got, (squared / squared.max(axis=1, keepdims=True))[:, 12:], rtol=1e-6, atol=1e-7)


def test_torch_and_numpy_inputs_agree_and_small_jaccard_chunks():
    from reidlab.engine import rerank

    qf, gf = clustered_features(10, 30, seed=6)
    a = re_ranking(qf, gf, k1=6, k2=3)
    b = re_ranking(qf.numpy(), gf.numpy(), k1=6, k2=3)
    np.testing.assert_array_equal(a, b)
    from scipy import sparse

    v = sparse.random(5, 20, density=0.4, format="csr", random_state=0, dtype=np.float32)
    g = sparse.random(7, 20, density=0.4, format="csr", random_state=1, dtype=np.float32)
    dense = np.minimum(v.toarray()[:, None, :], g.toarray()[None, :, :]).sum(-1)
    for chunk in (1, 3, 1 << 20):
        np.testing.assert_allclose(rerank._jaccard_overlap(v, g, "cpu", chunk=chunk).numpy(), dense, rtol=1e-6)


def test_bad_arguments_are_named():
    qf, gf = clustered_features(4, 6)
    with pytest.raises(ValueError, match="either"):
        re_ranking(qf, gf, q_g_dist=np.zeros((4, 6)))
    with pytest.raises(ValueError, match="k2"):
        re_ranking(qf, gf, k1=2, k2=5)
    with pytest.raises(ValueError, match="q_q_dist"):
        re_ranking(q_g_dist=np.zeros((4, 6)), q_q_dist=np.zeros((3, 3)), g_g_dist=np.zeros((6, 6)))


def test_tiny_sets_with_fewer_images_than_k1():
    qf, gf = clustered_features(3, 5, seed=7)
    qg, qq, gg = distances(qf, gf)
    got = re_ranking(qf, gf)  # k1=20 > 8 images: every image is a neighbour
    np.testing.assert_allclose(got, dense_reference(qg, qq, gg, 20, 6, 0.3), atol=1e-4)
