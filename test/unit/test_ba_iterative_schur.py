"""Iterative Schur (PCG on the reduced camera system) and CGNR with the Schur-Jacobi preconditioner
on monocular windows without fixed cameras: their step is the Schur step, the 7-DoF gauge does not
break CG, and plain least squares reaches the Schur optimum (block-Jacobi CGNR: or says it did not)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, Precision, ProblemKind, precision_policy
from mp_slam_ros.sim.ba_windows import WindowConfig, generate_window
from mp_slam_ros.solvers.ba import BundleAdjustment, ba_solver_options, bundle_adjust, make_linear_solver
from mp_slam_ros.solvers.linear.base import LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.linear.direct_fallback import DirectFallback
from mp_slam_ros.solvers.linear.iterative_schur import CheckedStep, IterativeSchurSolver, _symmetric_csr
from mp_slam_ros.solvers.linear.schur import SchurSolver, _reduced_camera_system
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: A cold-started 50-keyframe monocular window on which CGNR with block-Jacobi stopped with
#: ``converged_function`` 5-9% above the optimum before the stopping rules and this solver.
HARD_SEED = 3


def _system(window, dtype=np.float64) -> tuple[BundleAdjustment, ScaledSystem]:
    ba = BundleAdjustment(window.problem)
    lin = ba.linearize(ba.initial_state(), dtype)
    return ba, ScaledSystem.from_linearization(lin.jacobian, lin.residual)


@pytest.mark.parametrize("damping", [1e-3, 1e-9])
def test_fp64_step_is_the_schur_step_without_fixed_cameras(damping: float) -> None:
    window = generate_window(12, 5, WindowConfig.monocular())
    assert not window.problem.fixed_cams.any()
    ba, system = _system(window)
    policy = precision_policy(Precision.FP64, ProblemKind.BA)
    options = LinearSolverOptions(rtol=1e-14, max_iterations=2000, stall_iterations=200)
    steps = []
    cgnr = make_linear_solver(ba.structure, "cgnr", "schur_jacobi")
    for solver in (SchurSolver(ba.structure), IterativeSchurSolver(ba.structure), cgnr):
        solver.prepare(system, policy, Backend.CPU)
        result = solver.solve(system, damping, policy, options)
        assert not result.status.failed
        steps.append(result.step_scaled)
    J = system.jacobian_scaled
    # Compare what LM uses: the model decrease and the predicted residual (the gauge directions
    # are only damped, so the steps themselves may differ along them when damping is tiny).
    predicted = [J @ step - system.rhs for step in steps]
    for other in (1, 2):
        np.testing.assert_allclose(predicted[other], predicted[0], atol=1e-6 * np.linalg.norm(system.rhs))
        if damping >= 1e-3:
            np.testing.assert_allclose(steps[other], steps[0], rtol=1e-6, atol=1e-7 * np.abs(steps[0]).max())


@pytest.mark.parametrize("solver_name", ["iterative_schur", "cgnr"])
@pytest.mark.parametrize("mode", [Precision.MIXED, Precision.FP32, Precision.FP16])
def test_gauge_freedom_does_not_break_cg(mode: Precision, solver_name: str) -> None:
    """Seven null directions, damped only by lambda: CG stays finite and decreases the model."""
    window = generate_window(20, 2, WindowConfig.monocular(plain_least_squares=True))
    ba, system = _system(window, precision_policy(mode, ProblemKind.BA).residual)
    policy = precision_policy(mode, ProblemKind.BA)
    solver = make_linear_solver(ba.structure, solver_name, "schur_jacobi")
    solver.prepare(system, policy, Backend.CPU)
    for damping in (1e-2, 1e-6, 1e-10):
        result = solver.solve(system, damping, policy, ba_solver_options(mode).linear)
        assert result.status in (LinearStatus.CONVERGED, LinearStatus.STALLED, LinearStatus.MAX_ITERATIONS)
        assert np.all(np.isfinite(result.step_scaled))
        if mode is Precision.FP16 and result.status is LinearStatus.STALLED and result.relative_residual >= 1.0:
            assert not result.step_scaled.any()  # no progress in naive fp16: the LM driver escalates
            continue
        predicted = system.jacobian_scaled @ result.step_scaled - system.rhs
        assert predicted @ predicted < 0.5 * (system.rhs @ system.rhs)


@pytest.fixture(scope="module")
def hard_window():
    window = generate_window(50, HARD_SEED, WindowConfig.monocular(plain_least_squares=True))
    reference = bundle_adjust(
        window.problem, ba_solver_options("fp64", function_tolerance=1e-12, max_iterations=200), solver="schur"
    )
    return window, BundleAdjustment(window.problem).cost(reference.state, np.float64)


#: Before: CGNR with block-Jacobi met its relative residual (<= 0.1) while missing the
#: small-curvature directions and claimed convergence 5-9% above the optimum (then, with LM's
#: certification, ran to max_iterations there). With the Schur-Jacobi preconditioner and the
#: Nash-Sofer test it reaches the optimum like the iterative Schur solver, and says so.
@pytest.mark.parametrize("solver", ["iterative_schur", "cgnr"])
@pytest.mark.parametrize("mode", ["mixed", "fp32"])
def test_plain_least_squares_reaches_the_schur_optimum(hard_window, solver: str, mode: str) -> None:
    window, optimum = hard_window
    result = bundle_adjust(window.problem, ba_solver_options(mode), solver=solver)
    final = BundleAdjustment(window.problem).cost(result.state, np.float64)
    assert final <= optimum * (1 + 1e-3) and result.summary.converged, result.summary.termination
    assert result.summary.linear_solver == ("iterative_schur" if solver == "iterative_schur" else "cgnr+schur_jacobi")


def test_block_jacobi_cgnr_does_not_claim_convergence_above_the_optimum(hard_window) -> None:
    window, optimum = hard_window
    result = bundle_adjust(window.problem, ba_solver_options("mixed"), solver="cgnr", preconditioner="block_jacobi_static")
    final = BundleAdjustment(window.problem).cost(result.state, np.float64)
    assert final <= optimum * (1 + 1e-3) or not result.summary.converged, result.summary.termination


class _Fixed:
    """A linear solver that returns a given step with a given status (to test CheckedStep)."""

    name = "fixed"

    def __init__(self, step: np.ndarray, status: LinearStatus, relative: float) -> None:
        self.result = (step, status, relative)

    def prepare(self, system, policy, backend) -> None:
        pass

    def solve(self, system, damping, policy, options):
        step, status, relative = self.result
        return LinearSolveResult(step.copy(), status, 7, relative)


def test_checked_step_rejects_a_step_that_increases_the_model() -> None:
    """A low-precision CG whose recurrences claim convergence for a step that increases the
    model (or solves none of its residual) must not be trusted; the zero step with STALLED at
    relative residual 1 makes the LM driver escalate the precision."""
    window = generate_window(12, 5, WindowConfig.monocular())
    ba, system = _system(window)
    policy = precision_policy(Precision.MIXED, ProblemKind.BA)
    options = ba_solver_options("mixed").linear
    exact = SchurSolver(ba.structure)
    good = exact.solve(system, 1e-3, policy, options).step_scaled
    cases = [(-good, LinearStatus.CONVERGED, 0.05), (100.0 * good, LinearStatus.CONVERGED, 0.05),
             (0.5 * good, LinearStatus.CONVERGED, 3.0), (good, LinearStatus.CONVERGED, 0.05)]
    results = []
    for step, status, relative in cases:
        solver = CheckedStep(_Fixed(step, status, relative))
        solver.prepare(system, policy, Backend.CPU)
        results.append(solver.solve(system, 1e-3, policy, options))
    for bad in results[:2]:  # the model increases: zero step, no progress
        assert bad.status is LinearStatus.STALLED and bad.relative_residual == 1.0 and not bad.trusted
        assert not bad.step_scaled.any()
    assert results[2].status is LinearStatus.STALLED and results[2].step_scaled.any() and not results[2].trusted
    assert results[3].status is LinearStatus.CONVERGED and np.array_equal(results[3].step_scaled, good)


def _exact_step() -> tuple[BundleAdjustment, ScaledSystem, object, LinearSolverOptions, np.ndarray]:
    """A small monocular window's system, mixed policy, BA linear options and its exact step."""
    window = generate_window(12, 5, WindowConfig.monocular())
    ba, system = _system(window)
    policy = precision_policy(Precision.MIXED, ProblemKind.BA)
    options = ba_solver_options("mixed").linear
    exact = SchurSolver(ba.structure).solve(system, 1e-3, policy, options).step_scaled
    return ba, system, policy, options, exact


def test_direct_fallback_takes_over_when_the_iterative_solve_hits_its_cap() -> None:
    ba, system, policy, options, exact = _exact_step()
    converged = DirectFallback(_Fixed(0.9 * exact, LinearStatus.CONVERGED, 0.05), SchurSolver(ba.structure))
    converged.prepare(system, policy, Backend.CPU)
    kept = converged.solve(system, 1e-3, policy, options)
    assert kept.solver == "fixed" and not kept.events and not converged.solves_in_float64
    capped = DirectFallback(_Fixed(0.5 * exact, LinearStatus.MAX_ITERATIONS, 0.3), SchurSolver(ba.structure))
    capped.prepare(system, policy, Backend.CPU)
    first, second = (capped.solve(system, 1e-3, policy, options) for _ in range(2))
    assert capped.solves_in_float64  # the LM driver then moves the residuals to float64
    assert first.solver == second.solver == "schur" and first.status is LinearStatus.CONVERGED
    assert [action for action, _ in first.events] == ["direct"] and "max_iterations" in first.events[0][1]
    assert not second.events
    np.testing.assert_allclose(first.step_scaled, exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())


def test_direct_fallback_solves_one_system_exactly_without_taking_over() -> None:
    """LM's convergence certificate: one exact solve; the next steps stay iterative."""
    ba, system, policy, options, exact = _exact_step()
    fallback = DirectFallback(_Fixed(0.9 * exact, LinearStatus.CONVERGED, 0.3), SchurSolver(ba.structure))
    fallback.prepare(system, policy, Backend.CPU)
    certificate = fallback.solve_exactly(system, 1e-3, policy, options)
    assert certificate.solver == "schur" and not fallback.solves_in_float64
    np.testing.assert_allclose(certificate.step_scaled, exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())
    assert fallback.solve(system, 1e-3, policy, options).solver == "fixed"


def test_a_monocular_window_whose_cg_stalls_reaches_the_optimum_through_the_direct_fallback() -> None:
    """A "2 fixed cameras" window of bench_ba (its scale barely fixed): solved tight, CGNR mixed
    without the fallback ended at max_iterations 0.18% above the tight Schur optimum."""
    window = generate_window(50, 311016, WindowConfig.monocular(gauge_free=False))
    reference = bundle_adjust(window.problem, ba_solver_options("fp64", function_tolerance=1e-12, max_iterations=200),
                              solver="schur")
    optimum = BundleAdjustment(window.problem).cost(reference.state, np.float64)
    result = bundle_adjust(window.problem, ba_solver_options("mixed", function_tolerance=1e-6, max_iterations=100),
                           solver="cgnr", preconditioner="schur_jacobi")
    final = BundleAdjustment(window.problem).cost(result.state, np.float64)
    assert final <= optimum * (1 + 1e-3)
    assert [change.action for change in result.summary.linear_solver_changes] == ["direct"]
    assert result.summary.precision_used is Precision.FP64 and result.summary.escalations
    off = ba_solver_options("mixed", function_tolerance=1e-6, max_iterations=100)
    off.linear = replace(off.linear, fallback=False)  # the linear solvers' fallback switch turns it off
    without = bundle_adjust(window.problem, off, solver="cgnr", preconditioner="schur_jacobi")
    assert not without.summary.linear_solver_changes


def test_a_drifted_float16_solve_is_solved_again_in_float32() -> None:
    """bench_ba's window 25 of "2 fixed cameras": PCG with float16 products stopped on its
    truncated-Newton test at a recurrence residual of 0.036 where the true one was 0.056; LM went
    on with such steps and claimed convergence 0.23% above the optimum, at another local minimum.
    Solved again with float32 products (an event of the solve; the LM policy stays ``mixed``),
    the run ends at the optimum."""
    window = generate_window(50, 311025, WindowConfig.monocular(gauge_free=False))
    reference = bundle_adjust(window.problem, ba_solver_options("fp64", function_tolerance=1e-12, max_iterations=200),
                              solver="schur")
    optimum = BundleAdjustment(window.problem).cost(reference.state, np.float64)
    result = bundle_adjust(window.problem, ba_solver_options("mixed", True), solver="iterative_schur")
    assert BundleAdjustment(window.problem).cost(result.state, np.float64) <= optimum * (1 + 1e-3)
    again = [c for c in result.summary.linear_solver_changes if c.action == "higher_precision"]
    assert again and "float16 PCG drifted" in again[0].reason and "float32 products" in again[0].reason
    assert not any("drift" in e.reason for e in result.summary.escalations)


@pytest.fixture(scope="module")
def long_chain():
    """A 120-keyframe RGB-D run with 2-20 keyframe tracks: a long camera chain, as a session's keyframes."""
    window = generate_window(120, 1, WindowConfig())
    ba = BundleAdjustment(window.problem)
    return ba, *_system(window)[1:]


def _reduced(ba: BundleAdjustment, system: ScaledSystem, kd: int, span: int) -> np.ndarray:
    """``S`` (dense) as the kernel fills it with band ``kd`` and coupling span ``span`` (columns);
    the solver's band -> CSR conversion gives the same matrix."""
    s = ba.structure
    n = s.num_pose_columns
    band = np.empty((kd + 1, n), order="F")
    _reduced_camera_system(
        system.jacobian_scaled.indptr, system.jacobian_scaled.data, system.rhs, 1e-6, s.cam_column, s.obs_cam,
        s.obs_stereo_row, s.point_obs_ptr, band, np.empty(n), np.empty((s.num_points, 3, 3)),
        np.empty((s.num_points, 3)), np.empty((s.obs_cam.size, 3, 6)), span,
    )
    upper = sp.dia_matrix((band, kd - np.arange(kd + 1)), shape=(n, n)).toarray()
    dense = upper + np.triu(upper, 1).T
    np.testing.assert_array_equal(sp.csr_matrix(_symmetric_csr(band), shape=(n, n)).toarray(), dense)
    return dense


def test_band_of_the_reduced_system_is_positive_semidefinite_and_its_limits_are_exact(long_chain) -> None:
    """Each landmark adds its contribution on runs of cameras: a PSD matrix for any span; the
    widest span is the exact ``S``, span 0 its diagonal blocks."""
    ba, system = long_chain
    full_kd = ba.structure.num_pose_columns - 1
    exact = _reduced(ba, system, full_kd, full_kd + 1)
    diagonal = _reduced(ba, system, 5, 0)
    blocks = np.kron(np.eye(exact.shape[0] // 6), np.ones((6, 6))).astype(bool)
    np.testing.assert_allclose(diagonal, np.where(blocks, exact, 0.0), atol=1e-12)
    banded = _reduced(ba, system, 6 * 8 + 5, 6 * 8)
    assert np.linalg.eigvalsh(banded).min() > 0.0  # PSD + the damping
    assert np.abs(banded - exact).max() > 1e-3  # couplings beyond the band were dropped
    offsets = np.abs(np.subtract.outer(np.arange(exact.shape[0]), np.arange(exact.shape[0])))
    assert not banded[offsets > 6 * 8 + 5].any()


@pytest.mark.parametrize("mode", [Precision.FP64, Precision.MIXED])
def test_band_preconditioner_solves_a_long_chain_in_fewer_iterations(long_chain, mode: Precision) -> None:
    """Same step as the direct Schur solve; block-Jacobi needs several times the iterations."""
    ba, system = long_chain
    policy = precision_policy(mode, ProblemKind.BA)
    options = LinearSolverOptions(rtol=1e-6, max_iterations=2000, stall_iterations=200)
    exact = SchurSolver(ba.structure).solve(system, 1e-4, policy, options).step_scaled
    iterations = {}
    for band in (0, 16):
        result = IterativeSchurSolver(ba.structure, band=band).solve(system, 1e-4, policy, options)
        assert result.status is LinearStatus.CONVERGED
        iterations[band] = result.iterations
        predicted = system.jacobian_scaled @ (result.step_scaled - exact)
        tolerance = 1e-3 if mode is Precision.FP64 else 3e-2
        assert np.linalg.norm(predicted) < tolerance * np.linalg.norm(system.jacobian_scaled @ exact)
    assert 2 * iterations[16] < iterations[0]


def test_negative_band_is_a_config_error(long_chain) -> None:
    with pytest.raises(ConfigError, match="preconditioner_band"):
        IterativeSchurSolver(long_chain[0].structure, band=-1)
