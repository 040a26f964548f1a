"""The CHOLMOD adapter: whichever binding is installed gives the same answers as SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mp_slam_ros.solvers.linear import cholmod

pytestmark = pytest.mark.skipif(not cholmod.binding(), reason="no CHOLMOD binding installed")


def _jacobian(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    J = sp.random(300, 120, density=0.03, random_state=rng, format="csr")
    return sp.csr_matrix(sp.vstack([J, sp.eye(120)]))


def test_a_binding_is_installed_without_system_suitesparse() -> None:
    assert cholmod.binding() in ("cvxopt", "scikit-sparse")


def test_normal_equations_factor_matches_scipy() -> None:
    J = _jacobian()
    gradient = J.T @ np.random.default_rng(1).normal(size=J.shape[0])
    factor = cholmod.NormalEquationsFactor(J)
    for beta in (0.0, 1e-3, 10.0):
        expected = spla.spsolve(sp.csc_matrix(J.T @ J + beta * sp.eye(J.shape[1])), gradient)
        np.testing.assert_allclose(factor.solve(J, beta, gradient), expected, rtol=1e-9, atol=1e-12)


def test_fill_reducing_permutation_is_a_permutation_that_reduces_fill() -> None:
    # An arrow matrix: factored in natural order the first row fills everything.
    n = 200
    arrow = sp.lil_matrix((n, n))
    arrow[0, :] = 1.0
    arrow[:, 0] = 1.0
    arrow.setdiag(1.0)
    perm = cholmod.fill_reducing_permutation(sp.csr_matrix(arrow))
    assert sorted(perm.tolist()) == list(range(n))
    assert perm[-1] == 0  # the dense node is eliminated last


def test_indefinite_matrix_raises_a_factor_error() -> None:
    J = sp.csr_matrix(np.zeros((3, 2)))
    factor = cholmod.NormalEquationsFactor(J)
    with pytest.raises(cholmod.FACTOR_ERRORS):
        factor.solve(J, 0.0, np.ones(2))


def test_normal_pattern_keeps_its_pattern_when_values_cancel() -> None:
    from mp_slam_ros.solvers.linear.normal_equations import NormalPattern

    J = _jacobian(2)
    pattern = NormalPattern(J)
    cancelled = J.copy()
    cancelled.data[:] = 0.0  # SciPy's J^T J would drop every entry; the fixed pattern keeps them
    assert pattern.lower(cancelled, 0.5).nnz == pattern.nnz
    expected = sp.tril(J.T @ J + 0.5 * sp.eye(J.shape[1])).toarray()
    np.testing.assert_allclose(pattern.lower(J, 0.5).toarray(), expected, atol=1e-12)
