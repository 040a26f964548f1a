"""Why iterative_schur/mixed claims convergence 0.23% above the optimum on one bench_ba window.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/ba/window25/check.py

Window 25 of the optimum section's "monocular, 2 fixed cameras" class (``bench_ba.py``'s seed
1000 + 300,000 + 10,000 + 25). For fp64 and mixed: each LM iteration's inner solve (iterations,
the relative residual CG reports from its recurrence and the true one of the reduced camera
system in float64), then the final cost, the cost a tight fp64 Schur solve reaches from the
claimed state, and how far the two solutions' cameras are apart.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import mp_slam_ros.solvers.linear.iterative_schur as iterative_schur  # noqa: E402
from ba_bench_sections import OPTIMUM_CASES, reference  # noqa: E402
from mp_slam_ros.sim.ba_windows import generate_window  # noqa: E402
from mp_slam_ros.solvers.ba import BundleAdjustment, ba_solver_options, bundle_adjust  # noqa: E402
from mp_slam_ros.solvers.linear import pcg as pcg_module  # noqa: E402

WINDOW_SEED = 1000 + 300_000 + 10_000 * 1 + 25
_reduced_solve = iterative_schur.IterativeSchurSolver._reduced_solve


def _true_residual(solver, J, band, H_ll_inv, g_unit, damping, policy, options, y) -> float:  # noqa: ANN001
    """||g - S y|| / ||g|| of the reduced system with every product in float64."""
    exact = replace(policy, matvec=np.dtype(np.float64), vector=np.dtype(np.float64),
                    preconditioner=np.dtype(np.float64))
    measured: list[float] = []

    def residual_only(apply_S, g, precondition, options, xp, flexible):  # noqa: ANN001, ARG001
        y64 = np.asarray(y, dtype=np.float64)
        measured.append(float(np.linalg.norm(g - apply_S(y64)) / np.linalg.norm(g)))
        return y64, None, 0, 0.0

    iterative_schur.pcg = residual_only
    try:
        _reduced_solve(solver, J, band, H_ll_inv, g_unit, damping, exact, options)
    finally:
        iterative_schur.pcg = pcg_module.pcg
    return measured[0]


def _logged(solver, J, band, H_ll_inv, g_unit, damping, policy, options):  # noqa: ANN001
    y, status, iterations, relative, shifts = _reduced_solve(solver, J, band, H_ll_inv, g_unit, damping, policy, options)
    true = _true_residual(solver, J, band, H_ll_inv, g_unit, damping, policy, options, y)
    print(f"    PCG ({np.dtype(policy.matvec).name} products) {status.value:>14} after {iterations:3d} iterations, "
          f"relative residual {relative:.3f} (recurrence), {true:.3f} (true)")
    return y, status, iterations, relative, shifts


def main() -> None:
    """Print the inner solves of both runs and the check of the mixed run's claim."""
    window = generate_window(50, WINDOW_SEED, OPTIMUM_CASES[1][1])
    optimum = reference(window)
    print(f"optimum (fp64 Schur, tolerance 1e-12): {optimum.cost:.4f}")
    iterative_schur.IterativeSchurSolver._reduced_solve = _logged
    runs = {}
    for mode in ("fp64", "mixed"):
        print(f"iterative_schur/{mode}: the first 6 LM iterations' inner solves")
        counted = 0

        def stop_after_six(record) -> bool:  # noqa: ANN001
            nonlocal counted
            counted += 1
            return counted < 6

        bundle_adjust(window.problem, ba_solver_options(mode, True), solver="iterative_schur", callback=stop_after_six)
    iterative_schur.IterativeSchurSolver._reduced_solve = _reduced_solve
    for mode in ("fp64", "mixed"):
        result = bundle_adjust(window.problem, ba_solver_options(mode, True), solver="iterative_schur")
        runs[mode] = result
        s = result.summary
        changes = [(c.iteration, c.action) for c in s.linear_solver_changes]
        escalations = [(e.iteration, e.to_precision.value) for e in s.escalations]
        print(f"iterative_schur/{mode}: {s.termination.value} after {s.num_iterations} iterations at "
              f"{s.final_cost:.4f} ({s.final_cost / optimum.cost - 1:+.2e}); linear solver changes {changes}, "
              f"escalations {escalations}")
    claimed = runs["mixed"].state
    from_claim = reference(window, claimed)
    cost = BundleAdjustment(window.problem).cost(claimed, np.float64)
    print(f"tight fp64 Schur from the mixed claim: {cost:.4f} -> {from_claim.cost:.4f} "
          f"({from_claim.cost / cost - 1:+.1e}): {'a local minimum' if from_claim.cost >= cost * (1 - 1e-3) else 'short of one'}")
    apart = np.linalg.norm(claimed.T_world_cam[:, :3, 3] - optimum.state.T_world_cam[:, :3, 3], axis=1)
    print(f"camera positions, mixed claim vs optimum: median {np.median(apart):.3f} m, max {apart.max():.3f} m")


if __name__ == "__main__":
    main()
