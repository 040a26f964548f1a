"""PCM: odometry and pairwise checks, maximum clique."""

from __future__ import annotations

import numpy as np

from mp_slam_ros.backend.loop_consistency import ConsistencyConfig, LoopMeasurement, OdometryChains, PairwiseConsistency, max_clique
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse


def test_max_clique_prefers_the_large_consistent_cluster() -> None:
    n = 9
    adjacency = np.zeros((n, n), bool)
    for cluster in ([0, 2, 4, 6, 8], [1, 3, 5]):
        adjacency[np.ix_(cluster, cluster)] = True
    np.fill_diagonal(adjacency, False)
    allowed = np.ones(n, bool)
    assert np.flatnonzero(max_clique(adjacency, allowed, 32)).tolist() == [0, 2, 4, 6, 8]
    allowed[[0, 2]] = False
    assert np.flatnonzero(max_clique(adjacency, allowed, 32)).tolist() in ([1, 3, 5], [4, 6, 8])


def test_true_loops_pass_and_a_wrong_loop_is_rejected() -> None:
    rng = np.random.default_rng(0)
    chains = OdometryChains()
    truth = [se3_exp(np.array([[0.3 * k, 0.0, 0.0, 0.0, 0.0, 0.05 * k]]))[0] for k in range(60)]
    for T in truth:
        chains.append(T, 0)
    pcm = PairwiseConsistency(ConsistencyConfig())
    covariance = np.diag([1e-4] * 3 + [1e-5] * 3)
    for match, query in [(2, 50), (3, 51), (4, 52)]:
        noise = se3_exp(rng.normal(0, 0.005, (1, 6)))[0]
        pcm.add(LoopMeasurement(match, query, se3_inverse(truth[match]) @ truth[query] @ noise, covariance), chains)
    wrong = se3_inverse(truth[10]) @ truth[55] @ se3_exp(np.array([[3.0, 1.0, 0.0, 0.0, 0.0, 0.3]]))[0]
    chi2 = pcm.add(LoopMeasurement(10, 55, wrong, covariance), chains)
    assert chi2 > pcm.config.max_chi2
    assert pcm.accepted().tolist() == [True, True, True, False]
