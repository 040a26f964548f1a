"""``Backend.AUTO`` picks CUDA only when the CUDA path passes its own check on this machine."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros import precision
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, check_backend_against_cpu, cuda_self_test, select_backend


@pytest.fixture(autouse=True)
def _fresh_self_test() -> Iterator[None]:
    """The self-test is cached per process: clear it around every test (monkeypatched inputs)."""
    cuda_self_test.cache_clear()
    yield
    cuda_self_test.cache_clear()


def test_auto_is_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cuda_available", lambda: False)
    assert cuda_self_test() == "CuPy is not installed or sees no CUDA device"
    assert select_backend("auto") is Backend.CPU
    with pytest.raises(ConfigError, match="backend"):
        select_backend("cuda")


@pytest.mark.skipif(precision.cuda_available(), reason="this machine has CuPy and a CUDA device")
def test_auto_is_the_cpu_on_this_machine() -> None:
    assert select_backend(Backend.AUTO) is Backend.CPU
    assert select_backend("cpu") is Backend.CPU


def test_a_device_whose_check_fails_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cuda_available", lambda: True)  # a device "seen", CuPy broken
    calls = []

    def broken(backend: Backend) -> None:
        calls.append(backend)
        raise RuntimeError("J x (float16) on cuda differs from the CPU by 3.1e+00")

    monkeypatch.setattr(precision, "check_backend_against_cpu", broken)
    assert select_backend("auto") is Backend.CPU
    for _ in range(2):
        with pytest.raises(ConfigError, match="differs from the CPU by 3.1e"):
            select_backend("cuda")  # an explicit request never runs a path that gives wrong answers
    assert calls == [Backend.CUDA]  # checked once per process


def test_the_real_check_fails_without_cupy(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    try:
        import cupy  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("CuPy is installed here")
    monkeypatch.setattr(precision, "cuda_available", lambda: True)
    reason = cuda_self_test()
    assert reason is not None and "cupy" in reason.lower()
    assert select_backend("auto") is Backend.CPU
    with pytest.raises(ConfigError, match="backend"):
        select_backend("cuda")


def test_a_device_whose_check_passes_is_used_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cuda_available", lambda: True)
    monkeypatch.setattr(precision, "check_backend_against_cpu", lambda backend: None)
    assert select_backend("cuda") is Backend.CUDA
    assert select_backend("auto") is Backend.CPU  # measured slower end to end (select_backend's docstring)


def test_the_check_passes_for_the_cpu_against_itself() -> None:
    check_backend_against_cpu(Backend.CPU)  # every part runs and compares (no exception)


def test_the_check_names_a_part_that_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    from mp_slam_ros.solvers.linear import operators

    original = operators.SparseOperator.matvec
    created = []
    original_init = operators.SparseOperator.__init__

    def init(self, matrix, dtype, backend=Backend.CPU, out_dtype=None):  # type: ignore[no-untyped-def]
        original_init(self, matrix, dtype, backend, out_dtype)
        created.append(self)

    def matvec(self, x):  # type: ignore[no-untyped-def]
        y = original(self, x)
        return y * 1.5 if len(created) % 2 == 0 and self is created[-1] else y  # the second of each pair is off

    monkeypatch.setattr(operators.SparseOperator, "__init__", init)
    monkeypatch.setattr(operators.SparseOperator, "matvec", matvec)
    with pytest.raises(RuntimeError, match=r"J x \(float16\) on cpu differs from the CPU"):
        check_backend_against_cpu(Backend.CPU)


@pytest.mark.parametrize(("median_blocks", "lanes"), [(0.0, 1), (2.0, 1), (3.0, 1), (8.0, 2), (33.0, 8), (1e6, 32)])
def test_the_cuda_kernel_gives_each_thread_about_four_blocks_of_a_row(median_blocks: float, lanes: int) -> None:
    from mp_slam_ros.solvers.linear.cuda_spmv import lanes_for

    assert lanes_for(median_blocks) == lanes


def test_the_cuda_kernel_stores_jacobians_in_the_blocks_they_are_made_of() -> None:
    from mp_slam_ros.sim.ba_windows import generate_window
    from mp_slam_ros.sim.pose_graphs import grid_graph, household_graph
    from mp_slam_ros.solvers.ba import BundleAdjustment
    from mp_slam_ros.solvers.linear.cuda_spmv import block_size_for
    from mp_slam_ros.solvers.pgo import PoseGraphProblem

    def jacobian(problem: object) -> sp.csr_matrix:
        return problem.linearize(problem.initial_state(), np.dtype(np.float64)).jacobian.tocsr()

    ba = jacobian(BundleAdjustment(generate_window(12, 3).problem))  # 2 or 3 rows per observation
    pgo_3d = jacobian(PoseGraphProblem(household_graph(200, dim=3, seed=1).graph))
    pgo_2d = jacobian(PoseGraphProblem(grid_graph(100, dim=2, seed=1).graph))
    assert [block_size_for(A) for A in (ba, pgo_3d, pgo_2d)] == [(1, 3), (6, 6), (3, 3)]
    assert [block_size_for(sp.csr_matrix(A.T)) for A in (ba, pgo_3d, pgo_2d)] == [(3, 1), (6, 6), (3, 3)]
    assert block_size_for(sp.random(30, 30, density=0.2, format="csr", random_state=0)) == (1, 1)
