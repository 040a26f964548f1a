"""The CUDA (CuPy) paths against the CPU path: products, incomplete-Cholesky solves, the
backend self-test, and whole PGO and BA solves with ``backend=cuda``.

Marked ``gpu``: skipped where CuPy sees no CUDA device (test/conftest.py). ``bench/gpu_check.sh``
runs them on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, Precision, ProblemKind, cuda_self_test, precision_policy, select_backend
from mp_slam_ros.sim.ba_windows import generate_window
from mp_slam_ros.sim.pose_graphs import grid_graph, household_graph
from mp_slam_ros.solvers.ba import BundleAdjustment, ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.linear.base import ScaledSystem
from mp_slam_ros.solvers.linear import cuda_trisolve
from mp_slam_ros.solvers.linear.cuda_spmv import CudaBlockSparseMatrix
from mp_slam_ros.solvers.linear.cuda_trisolve import CudaSolveTimeout, CudaTriangularFactor, CudaTriangularMatrix
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory, _triangular_solves
from mp_slam_ros.solvers.linear.operators import SparseOperator
from mp_slam_ros.solvers.pgo import PoseGraphProblem, default_options, optimize_pose_graph

pytestmark = pytest.mark.gpu

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
#: Norm-wise relative agreement expected between cuSPARSE and the CPU kernels per dtype
#: (different summation orders; fp16 outputs may round to a neighbouring half value).
_TOLERANCE = {_F16: 2e-3, _F32: 1e-5, _F64: 1e-12}


def _relative_error(got: object, expected: np.ndarray) -> float:
    import cupy

    got = cupy.asnumpy(got).astype(np.float64)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def _scaled_pose_graph_jacobian() -> ScaledSystem:
    problem = PoseGraphProblem(household_graph(600, dim=3, seed=2).graph)
    linearization = problem.linearize(problem.initial_state(), np.float64)
    return ScaledSystem.from_linearization(linearization.jacobian, linearization.residual)


def test_the_self_test_passes_and_cuda_is_accepted() -> None:
    assert cuda_self_test() is None
    assert select_backend("cuda") is Backend.CUDA
    assert select_backend("auto") is Backend.CPU


def _scaled_bundle_adjustment_jacobian() -> ScaledSystem:
    problem = BundleAdjustment(generate_window(30, 5).problem)
    linearization = problem.linearize(problem.initial_state(), np.float64)
    return ScaledSystem.from_linearization(linearization.jacobian, linearization.residual)


@pytest.mark.parametrize("dtype", [_F16, _F32, _F64])
@pytest.mark.parametrize("system", [_scaled_pose_graph_jacobian, _scaled_bundle_adjustment_jacobian])
def test_sparse_products_match_the_cpu(system, dtype: np.dtype) -> None:  # type: ignore[no-untyped-def]
    import cupy

    J = system().jacobian_scaled
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(J.shape[1]).astype(np.float32), rng.standard_normal(J.shape[0]).astype(np.float32)
    cpu, gpu = SparseOperator(J, dtype, Backend.CPU), SparseOperator(J, dtype, Backend.CUDA)
    assert _relative_error(gpu.matvec(cupy.asarray(x)), cpu.matvec(x).astype(np.float64)) <= _TOLERANCE[dtype]
    assert _relative_error(gpu.rmatvec(cupy.asarray(y)), cpu.rmatvec(y).astype(np.float64)) <= _TOLERANCE[dtype]


@pytest.mark.parametrize("block_size", [(1, 1), None])
@pytest.mark.parametrize("dtype", [_F16, _F32, _F64])
def test_native_kernel_matches_scipy_on_the_stored_values(dtype: np.dtype, block_size: tuple[int, int] | None) -> None:
    import cupy

    J = _scaled_pose_graph_jacobian().jacobian_scaled
    rng = np.random.default_rng(3)
    for M in (J, sp.csr_matrix(J.T)):
        x = rng.standard_normal(M.shape[1]).astype(dtype)
        stored = sp.csr_matrix((M.data.astype(dtype).astype(np.float64), M.indices, M.indptr), shape=M.shape)
        kernel = CudaBlockSparseMatrix(M, dtype, block_size)
        assert kernel.block_size == (block_size or (6, 6))
        got = kernel.dot(cupy.asarray(x))
        assert got.dtype == (_F32 if dtype == _F16 else dtype)
        # fp16 products are exact in fp32; only the fp32 sums round
        assert _relative_error(got, stored @ x.astype(np.float64)) <= (1e-12 if dtype == _F64 else 1e-5)


@pytest.mark.parametrize(("mode", "dtype"), [("fp64", _F64), ("fp32", _F32), ("mixed", _F16)])
def test_incomplete_cholesky_solves_match_the_cpu(mode: str, dtype: np.dtype) -> None:
    import cupy

    J = _scaled_pose_graph_jacobian().jacobian_scaled
    policy = precision_policy(mode, ProblemKind.PGO)
    factory = IncompleteCholeskyFactory(drop_tolerance=3e-3, block_size=6)
    cpu, gpu = factory(J, 0.0, policy, Backend.CPU), factory(J, 0.0, policy, Backend.CUDA)
    s = np.random.default_rng(2).standard_normal(J.shape[1]).astype(np.float32 if dtype == _F16 else dtype)
    expected = cpu.apply(s, policy.preconditioner).astype(np.float64)
    assert _relative_error(gpu.apply(cupy.asarray(s), policy.preconditioner), expected) <= max(_TOLERANCE[dtype], 1e-5)


def _random_triangular(n: int, lower: bool, seed: int) -> sp.csr_matrix:
    """A diagonally dominant triangular CSR ``(n, n)``: diagonal in [1, 2], about a third of the
    rows without off-diagonal entries, the others with up to 40 (more than a warp's 32 lanes)."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for i in range(n):
        others = np.arange(i) if lower else np.arange(i + 1, n)
        if others.size and rng.random() > 0.35:
            picked = rng.choice(others, size=min(others.size, int(rng.integers(1, 41))), replace=False)
            rows += [i] * picked.size
            cols += picked.tolist()
    off = sp.csr_matrix((rng.uniform(-1.0, 1.0, len(rows)) / 40.0, (rows, cols)), shape=(n, n))
    return sp.csr_matrix(off + sp.diags(rng.uniform(1.0, 2.0, n)))


@pytest.mark.parametrize("n", [0, 1, 2, 37, 3000])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("dtype", [_F16, _F32, _F64])
def test_native_triangular_solve_matches_scipy(dtype: np.dtype, lower: bool, n: int) -> None:
    import cupy
    from scipy.sparse.linalg import spsolve_triangular

    A = _random_triangular(n, lower, seed=n)
    b = np.random.default_rng(5).uniform(-1.0, 1.0, n).astype(dtype)
    matrix = CudaTriangularMatrix(A, dtype, lower)
    got = matrix.solve(cupy.asarray(b))
    matrix.check()
    assert got.dtype == dtype and got.shape == (n,)
    if n == 0:
        return
    stored = sp.csr_matrix((A.data.astype(dtype).astype(np.float64), A.indices, A.indptr), shape=A.shape)
    expected = spsolve_triangular(stored, b.astype(np.float64), lower=lower)
    # fp16: every unknown is stored rounded to float16 (relative 2^-11 each)
    assert _relative_error(got, expected) <= {_F16: 2e-3, _F32: 1e-6, _F64: 1e-14}[dtype]


@pytest.mark.parametrize("dtype", [_F16, _F32, _F64])
def test_native_factor_solves_match_the_cpu_kernel_on_an_incomplete_cholesky_factor(dtype: np.dtype) -> None:
    import cupy

    J = _scaled_pose_graph_jacobian().jacobian_scaled
    policy = precision_policy("fp64", ProblemKind.PGO)
    factor = IncompleteCholeskyFactory(drop_tolerance=3e-3, block_size=6)(J, 0.0, policy, Backend.CPU).factor(dtype)
    b = np.random.default_rng(4).uniform(-1.0, 1.0, J.shape[1]).astype(dtype)
    expected = _triangular_solves(*factor.kernel_arrays, b.astype(factor.lower.dtype), dtype == _F16)
    gpu = CudaTriangularFactor(factor.lower, factor.upper, dtype)
    got = gpu.solve(cupy.asarray(b))
    cupy.cuda.Device().synchronize()
    assert got.dtype == dtype
    assert _relative_error(got, expected.astype(np.float64)) <= {_F16: 2e-3, _F32: 1e-5, _F64: 1e-12}[dtype]


@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 3.0, 1e30])
def test_fp16_incomplete_cholesky_on_cuda_scales_its_input_as_the_cpu(magnitude: float) -> None:
    import cupy

    J = _scaled_pose_graph_jacobian().jacobian_scaled
    policy = precision_policy("mixed", ProblemKind.PGO)
    factory = IncompleteCholeskyFactory(drop_tolerance=3e-3, block_size=6)
    cpu, gpu = factory(J, 0.0, policy, Backend.CPU), factory(J, 0.0, policy, Backend.CUDA)
    s = (np.random.default_rng(6).standard_normal(J.shape[1]) * magnitude).astype(np.float32)
    expected = cpu.apply(s, _F16).astype(np.float64)
    got = gpu.apply(cupy.asarray(s), _F16)
    assert got.dtype == np.float32 and bool(cupy.isfinite(got).all())
    if magnitude == 0.0:
        assert not bool(cupy.any(got))
    else:
        assert _relative_error(got, expected) <= _TOLERANCE[_F16]


def test_the_watchdog_ends_a_deadlocked_solve(monkeypatch: pytest.MonkeyPatch) -> None:
    import cupy

    # rows 0 and 1 wait for each other (the host check that refuses such a matrix is bypassed)
    cyclic = sp.csr_matrix((np.ones(4), np.array([1, 0, 0, 1]), np.array([0, 2, 4])), shape=(2, 2))
    monkeypatch.setattr(cuda_trisolve, "_triangular_csr", lambda matrix, lower: matrix)
    matrix = CudaTriangularMatrix(cyclic, _F32, True, timeout_s=0.05)
    matrix.solve(cupy.ones(2, dtype=np.float32))
    with pytest.raises(CudaSolveTimeout):
        matrix.check()
    matrix.check()  # the flag was cleared


@pytest.mark.parametrize("mode", ["fp64", "fp32", "mixed"])
@pytest.mark.parametrize("make", [lambda: household_graph(800, dim=3, seed=4).graph,
                                  lambda: grid_graph(600, dim=2, seed=4).graph])
def test_pose_graph_solve_on_cuda_matches_the_cpu(make, mode: str) -> None:  # type: ignore[no-untyped-def]
    graph = make()
    cpu = optimize_pose_graph(graph, default_options(precision=mode, backend=Backend.CPU))
    gpu = optimize_pose_graph(graph, default_options(precision=mode, backend=Backend.CUDA))
    assert gpu.summary.backend is Backend.CUDA
    assert gpu.summary.termination.converged
    assert gpu.final_chi2 == pytest.approx(cpu.final_chi2, rel=1e-4)


@pytest.mark.parametrize("mode", [Precision.FP64, Precision.FP32, Precision.MIXED])
@pytest.mark.parametrize("solver", ["cgnr", "iterative_schur"])
def test_bundle_adjustment_on_cuda_matches_the_cpu(solver: str, mode: Precision) -> None:
    window = generate_window(12, 3)
    cpu = bundle_adjust(window.problem, ba_solver_options(mode, backend=Backend.CPU), solver=solver)
    gpu = bundle_adjust(window.problem, ba_solver_options(mode, backend=Backend.CUDA), solver=solver)
    assert gpu.summary.backend is Backend.CUDA
    assert gpu.summary.final_cost == pytest.approx(cpu.summary.final_cost, rel=1e-3)
