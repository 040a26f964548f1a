"""Sparsity-pattern kernels of PGO and the block ordering of the incomplete Cholesky."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory, _block_pattern, _ordering
from mp_slam_ros.solvers.pgo_kernels import jacobian_pattern


def _dense_jacobian_pattern(variable_from: np.ndarray, variable_to: np.ndarray, k: int, n: int) -> np.ndarray:
    """Which entries of the (E k, n k) Jacobian are structurally non-zero (reference)."""
    mask = np.zeros((variable_from.size * k, n * k), dtype=bool)
    for e, (a, b) in enumerate(zip(variable_from, variable_to)):
        for variable in (a, b):
            if variable >= 0:
                mask[e * k : (e + 1) * k, variable * k : (variable + 1) * k] = True
    return mask


@pytest.mark.parametrize("k", [3, 6])
def test_jacobian_pattern_matches_the_block_structure(k: int) -> None:
    rng = np.random.default_rng(k)
    n, edges = 12, 30
    variable_from = rng.integers(-1, n, edges)  # -1: the anchored (fixed) node
    variable_to = rng.integers(0, n, edges)
    variable_to[variable_to == variable_from] = (variable_to[variable_to == variable_from] + 1) % n
    scatter, indices, indptr = jacobian_pattern(variable_from, variable_to, k)
    values = np.zeros(indices.size)
    filled = scatter[scatter >= 0]
    assert np.unique(filled).size == filled.size == indices.size  # every slot written exactly once
    values[filled] = 1.0
    J = sp.csr_matrix((values, indices, indptr), shape=(edges * k, n * k))
    np.testing.assert_array_equal(J.toarray() != 0, _dense_jacobian_pattern(variable_from, variable_to, k, n))
    for e in range(edges):  # the scatter puts J_from in columns [0, k) and J_to in [k, 2k)
        assert (scatter[e, :, :k] >= 0).all() == (variable_from[e] >= 0)
        assert (scatter[e, :, k:] >= 0).all()


def test_block_pattern_is_the_quotient_graph() -> None:
    size = 3
    blocks = sp.random(5, 5, density=0.4, random_state=0, format="csr")
    blocks = blocks + blocks.T + sp.eye(5)
    A = sp.csr_matrix(sp.kron(blocks, np.ones((size, size))))
    q_ptr, q_idx = _block_pattern(A.indptr, A.indices, size)
    quotient = sp.csr_matrix((np.ones(q_idx.size), q_idx, q_ptr), shape=(5, 5))
    np.testing.assert_array_equal(quotient.toarray() != 0, blocks.toarray() != 0)


def test_block_ordering_keeps_blocks_contiguous() -> None:
    size = 6
    blocks = sp.random(20, 20, density=0.15, random_state=3, format="csr")
    A = sp.csr_matrix(sp.kron(blocks + blocks.T + sp.eye(20), np.ones((size, size))))
    perm = _ordering(A, IncompleteCholeskyFactory(drop_tolerance=3e-3, block_size=size))
    assert sorted(perm) == list(range(A.shape[0]))
    np.testing.assert_array_equal(perm.reshape(-1, size) % size, np.tile(np.arange(size), (20, 1)))
    np.testing.assert_array_equal(np.diff(perm.reshape(-1, size), axis=1), 1)


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="ichol.block_size"):
        IncompleteCholeskyFactory(block_size=0)
