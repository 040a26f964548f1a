"""Incomplete Cholesky: exactness on the pattern, fp16 emulation, breakdown shifts."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, precision_policy
from mp_slam_ros.solvers.linear.ichol import IncompleteCholesky, IncompleteCholeskyFactory, round_fp16
from mp_slam_ros.sim.pose_graphs import household_graph
from mp_slam_ros.solvers.linear.base import ScaledSystem
from mp_slam_ros.solvers.pgo import PoseGraphProblem

_FP64 = precision_policy("fp64", "pgo")
_MIXED = precision_policy("mixed", "pgo")


@numba.njit(cache=True)
def _round_all(values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = round_fp16(values[i])
    return out


def test_kernel_rounding_matches_numpy_float16() -> None:
    rng = np.random.default_rng(0)
    scales = np.float32(10.0) ** rng.integers(-9, 6, 20000).astype(np.float32)
    halves = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    finite = np.sort(halves[np.isfinite(halves)])
    midpoints = ((finite[1:].astype(np.float64) + finite[:-1]) / 2).astype(np.float32)  # ties
    values = np.concatenate([
        rng.standard_normal(20000).astype(np.float32) * scales, finite, midpoints,
        np.array([65504, 65519, 65520, 1e6, -1e6, 3e-8, 2.9e-8, 0.0, -0.0, np.inf, -np.inf, np.nan], np.float32),
    ])
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(_round_all(values), expected)


def _pose_graph_system() -> sp.csr_matrix:
    problem = PoseGraphProblem(household_graph(80, seed=2).graph)
    linearization = problem.linearize(problem.initial_state(), np.dtype(np.float64))
    return ScaledSystem.from_linearization(linearization.jacobian, linearization.residual).jacobian_scaled


def _dense_factor(preconditioner: IncompleteCholesky, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``(L L^T, P A P^T)`` as dense float64 arrays."""
    L = preconditioner.factor(dtype).lower.toarray().astype(np.float64)
    A = preconditioner.normal.toarray()[np.ix_(preconditioner.perm, preconditioner.perm)]
    return L @ L.T, A


@pytest.mark.parametrize("ordering", ["natural", "amd", "rcm"])
def test_ic0_reproduces_the_matrix_on_its_pattern(ordering: str) -> None:
    preconditioner = IncompleteCholeskyFactory(ordering=ordering)(_pose_graph_system(), 0.0, _FP64, Backend.CPU)
    product, A = _dense_factor(preconditioner, np.dtype(np.float64))
    pattern = np.tril(A) != 0
    np.testing.assert_allclose(product[pattern], A[pattern], atol=1e-12)
    assert preconditioner.shifts == 0


def test_tiny_drop_tolerance_gives_the_complete_factor_and_apply_solves() -> None:
    J = _pose_graph_system()
    preconditioner = IncompleteCholeskyFactory(drop_tolerance=1e-15)(J, 0.0, _FP64, Backend.CPU)
    product, A = _dense_factor(preconditioner, np.dtype(np.float64))
    np.testing.assert_allclose(product, A, atol=1e-12)
    rhs = np.random.default_rng(1).standard_normal(J.shape[1])
    np.testing.assert_allclose(preconditioner.apply(rhs, np.dtype(np.float64)), np.linalg.solve((J.T @ J).toarray(), rhs), rtol=1e-8)
    sparser = IncompleteCholeskyFactory(drop_tolerance=1e-2)(J, 0.0, _FP64, Backend.CPU)
    assert sparser.nnz < preconditioner.nnz


def test_fp16_factor_and_solves_hold_float16_values() -> None:
    J = _pose_graph_system()
    preconditioner = IncompleteCholeskyFactory(drop_tolerance=3e-3)(J, 0.0, _MIXED, Backend.CPU)
    factor = preconditioner.factor(np.dtype(np.float16))
    assert factor.lower.dtype == np.float32
    np.testing.assert_array_equal(factor.lower.data, factor.lower.data.astype(np.float16).astype(np.float32))
    rhs = np.random.default_rng(2).standard_normal(J.shape[1]).astype(np.float32)
    half = preconditioner.apply(rhs, np.dtype(np.float16))
    exact = preconditioner.apply(rhs.astype(np.float64), np.dtype(np.float64))
    error = np.linalg.norm(half - exact) / np.linalg.norm(exact)
    assert half.dtype == np.float32
    assert 1e-5 < error < 0.5  # real fp16 rounding (no silent fp32), amplified by cond(A)
    assert preconditioner.factor(np.dtype(np.float16)) is factor  # cached per dtype


def test_fp16_solves_round_whatever_the_input_scale() -> None:
    """The input is scaled by a power of two into (0.5, 1] before the float16 solves, so an input
    already there (scale 1) and twice it give the same answer up to that exact factor: the
    rounding of the solves' unknowns must not depend on whether a scaling happened."""
    J = _pose_graph_system()
    preconditioner = IncompleteCholeskyFactory(drop_tolerance=3e-3)(J, 0.0, _MIXED, Backend.CPU)
    rhs = np.random.default_rng(3).standard_normal(J.shape[1]).astype(np.float32)
    rhs *= np.float32(0.9) / np.max(np.abs(rhs))
    half = np.dtype(np.float16)
    np.testing.assert_array_equal(2 * preconditioner.apply(rhs, half), preconditioner.apply(2 * rhs, half))


def test_breakdown_in_fp16_is_retried_with_a_diagonal_shift() -> None:
    # SPD with pivot 1 - (1 - 1e-4)^2 ~ 2e-4 in fp64; in fp16 the off-diagonal rounds to 1.0
    # and the pivot to 0: a breakdown that only low precision shows.
    J = sp.csr_matrix(np.linalg.cholesky(np.array([[1.0, 1 - 1e-4], [1 - 1e-4, 1.0]])).T)
    preconditioner = IncompleteCholeskyFactory()(J, 0.0, _FP64, Backend.CPU)
    assert preconditioner.shifts == 0
    preconditioner.factor(np.dtype(np.float16))
    assert preconditioner.shifts >= 1
    assert preconditioner.factor(np.dtype(np.float16)).ok
    z = preconditioner.apply(np.array([1.0, -1.0], dtype=np.float32), np.dtype(np.float16))
    assert np.all(np.isfinite(z))


def test_non_finite_matrix_gives_a_non_finite_preconditioner() -> None:
    J = sp.csr_matrix(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    preconditioner = IncompleteCholeskyFactory(max_shifts=2)(J, 0.0, _FP64, Backend.CPU)
    assert preconditioner.shifts == 2
    assert not np.all(np.isfinite(preconditioner.apply(np.ones(2), np.dtype(np.float64))))


@pytest.mark.parametrize(("field", "value"), [("drop_tolerance", -1.0), ("ordering", "metis"), ("initial_shift", 0.0)])
def test_bad_options_name_the_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"ichol.{field}"):
        IncompleteCholeskyFactory(**{field: value})  # type: ignore[arg-type]


@pytest.mark.gpu
def test_cuda_triangular_solves_match_the_cpu() -> None:
    from mp_slam_ros.precision import cuda_available

    if not cuda_available():
        pytest.skip("no CUDA device (CuPy)")
    import cupy

    J = _pose_graph_system()
    cpu = IncompleteCholeskyFactory(drop_tolerance=3e-3)(J, 0.0, _FP64, Backend.CPU)
    gpu = IncompleteCholeskyFactory(drop_tolerance=3e-3)(J, 0.0, _FP64, Backend.CUDA)
    rhs = np.random.default_rng(3).standard_normal(J.shape[1]).astype(np.float32)
    expected = cpu.apply(rhs, np.dtype(np.float32))
    got = cupy.asnumpy(gpu.apply(cupy.asarray(rhs), np.dtype(np.float32)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_a_given_permutation_is_factored_in_and_must_fit() -> None:
    J = _pose_graph_system()
    reversed_order = np.arange(J.shape[1])[::-1].copy()
    preconditioner = IncompleteCholeskyFactory(permutation=reversed_order)(J, 0.0, _FP64, Backend.CPU)
    assert np.array_equal(preconditioner.perm, reversed_order)
    with pytest.raises(ValueError, match="permutation of 6 unknowns"):
        IncompleteCholeskyFactory(permutation=np.arange(6))(J, 0.0, _FP64, Backend.CPU)
