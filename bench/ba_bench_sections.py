"""The measured sections of bench_ba.py (timing, optimum, accuracy, products)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ba_peers import GTSAM_MAX_ITERATIONS, solve_gtsam, solve_scipy

import mp_slam_ros.solvers.linear.cgnr as cgnr_module
import mp_slam_ros.solvers.linear.iterative_schur as iterative_schur_module
from mp_slam_ros.geometry.lie import se3_inverse, se3_log
from mp_slam_ros.sim.ba_windows import BAWindow, WindowConfig, generate_window
from mp_slam_ros.solvers.ba import (
    LANDMARK_ITERATIONS,
    BAState,
    BundleAdjustment,
    ba_solver_options,
    bundle_adjust,
)
from mp_slam_ros.solvers.linear.operators import SparseOperator

Log = Callable[[str], None]
MODES = ("fp64", "fp32", "mixed", "fp16")
#: (name, solver, preconditioner, modes, landmark_iterations): our configurations of the timing
#: section ("schur-no-epi": without the embedded point iterations, to show what they change).
CONFIGS = [
    ("iterative_schur", "iterative_schur", "none", MODES, LANDMARK_ITERATIONS),
    ("cgnr", "cgnr", "schur_jacobi", MODES, LANDMARK_ITERATIONS),
    ("schur", "schur", "none", MODES, LANDMARK_ITERATIONS),
    ("schur-no-epi", "schur", "none", ("fp64",), 0),
    ("cgnr-noprec", "cgnr", "none", ("fp32", "mixed"), LANDMARK_ITERATIONS),
    ("cgnr-bj-dynamic", "cgnr", "block_jacobi", ("fp32", "mixed"), LANDMARK_ITERATIONS),
    ("cgnr-bj-static", "cgnr", "block_jacobi_static", ("fp32", "mixed"), LANDMARK_ITERATIONS),
]
PEERS = ("gtsam", "scipy", "scipy-tight")
#: A solve is "at equal cost" when its fp64 cost is within this of the reference.
EQUAL_COST = 1e-3


@dataclass
class Run:
    """One solve: wall time, fp64 final cost, iterations, what precision finally ran."""

    time_s: float
    cost: float
    iterations: int
    linear_iterations: int = 0
    escalations: int = 0
    precision_used: str = ""
    state: BAState | None = None
    termination: str = ""
    #: A ``converged_*`` claim above the optimum whose state a tight fp64 Schur solve cannot lower
    #: by more than ``EQUAL_COST``: another local minimum, not a stop short of one (:func:`_classify`).
    local_minimum: bool = False


def _ours(window: BAWindow, mode: str, solver: str, preconditioner: str,
          landmark_iterations: int = LANDMARK_ITERATIONS, initial_state: BAState | None = None,
          **options: object) -> Run:
    started = time.perf_counter()
    result = bundle_adjust(window.problem, ba_solver_options(mode, window.problem.monocular, **options), solver=solver,
                           preconditioner=preconditioner, landmark_iterations=landmark_iterations,
                           initial_state=initial_state)
    elapsed = time.perf_counter() - started
    s = result.summary
    cost = BundleAdjustment(window.problem).cost(result.state, np.float64)
    return Run(elapsed, cost, s.num_iterations, s.linear_iterations, len(s.escalations), s.precision_used.value,
               result.state, s.termination.value)


def reference(window: BAWindow, initial_state: BAState | None = None) -> Run:
    """Tightly converged fp64 Schur solution (the cost every method is compared with), from the
    window's initial values or from ``initial_state``.

    With the embedded point iterations: without them, LM crawls for hundreds of iterations along
    the flat valleys of landmarks with inconsistent observations and ends higher (see
    :class:`~mp_slam_ros.solvers.ba.BundleAdjustment`); this reference is the lower cost.
    """
    return _ours(window, "fp64", "schur", "none", initial_state=initial_state, function_tolerance=1e-12, max_iterations=200)


def _classify(window: BAWindow, run: Run, ref: Run) -> Run:
    """``run`` with :attr:`Run.local_minimum` set when it claims convergence more than
    ``EQUAL_COST`` above ``ref`` and the reference solve started from its state gains no more
    than that (the claim is a local minimum of the non-convex robust cost, not a premature stop)."""
    if run.termination.startswith("converged") and run.cost > ref.cost * (1.0 + EQUAL_COST):
        run.local_minimum = reference(window, run.state).cost >= run.cost * (1.0 - EQUAL_COST)
    return run


def _peer(window: BAWindow, name: str, tolerance: float | None = None) -> Run:
    """A peer's solve; GTSAM at relative error ``tolerance`` (default: ours) and its 100-iteration
    cap, its termination named as ours (stopped by the tolerance: ``converged_function``)."""
    problem = window.problem
    tolerance = tolerance or ba_solver_options(monocular=problem.monocular).function_tolerance
    termination = ""
    if name == "gtsam":
        peer = solve_gtsam(problem, tolerance)
        termination = "max_iterations" if peer.iterations >= GTSAM_MAX_ITERATIONS else "converged_function"
    elif name == "scipy":
        peer = solve_scipy(problem, tolerance)  # the SciPy BA cookbook's ftol=1e-4 setting
    else:
        peer = solve_scipy(problem, 1e-8, max_nfev=300)
    cost = BundleAdjustment(problem).cost(peer.state, np.float64)
    return Run(peer.solve_s, cost, peer.iterations, state=peer.state, termination=termination)


def _stats(runs: list[Run], refs: list[Run]) -> dict:
    times = np.array([r.time_s for r in runs])
    gaps = np.array([r.cost / ref.cost - 1.0 for r, ref in zip(runs, refs)])
    return {
        "median_ms": 1e3 * float(np.median(times)), "p95_ms": 1e3 * float(np.percentile(times, 95)),
        "median_cost_gap": float(np.median(gaps)), "max_cost_gap": float(np.max(gaps)),
        "equal_cost_fraction": float(np.mean(gaps <= EQUAL_COST)),
        "median_final_cost": float(np.median([r.cost for r in runs])),
        "median_iterations": float(np.median([r.iterations for r in runs])),
        "median_linear_iterations": float(np.median([r.linear_iterations for r in runs])),
        "escalated_fraction": float(np.mean([r.escalations > 0 for r in runs])),
        "precision_used": sorted({r.precision_used for r in runs}),
        "windows": len(runs),
    }


def timing_section(cases: list[tuple[str, int, WindowConfig]], count: int, seed: int, log: Log,
                   methods: Callable[[str], bool] = lambda name: True) -> dict:
    """Median/p95 time, cost and iterations per case (label, keyframes, generator config) of
    every method whose name (``"schur/fp64"``, ``"gtsam"``) ``methods`` accepts."""
    configs = [(name, solver, preconditioner, [m for m in modes if methods(f"{name}/{m}")], iterations)
               for name, solver, preconditioner, modes, iterations in CONFIGS]
    peers = [peer for peer in PEERS if methods(peer)]
    warm = generate_window(10, seed - 1)
    for name, solver, preconditioner, modes, iterations in configs:  # compile numba specializations
        for mode in modes:
            _ours(warm, mode, solver, preconditioner, iterations)
    out = {}
    for label, size, config in cases:
        windows = [generate_window(size, seed + 1000 * size + i, config) for i in range(count)]
        refs = [reference(w) for w in windows]
        runs: dict[str, list[Run]] = {}
        for index, window in enumerate(windows):
            for name, solver, preconditioner, modes, iterations in configs:
                for mode in modes:
                    runs.setdefault(f"{name}/{mode}", []).append(_ours(window, mode, solver, preconditioner, iterations))
            for peer in peers:
                if peer != "scipy-tight" or (index < 3 and size <= 25):
                    runs.setdefault(peer, []).append(_peer(window, peer))
        problems = [w.problem for w in windows]
        rows_per_obs = 3 if config.rgbd else 2
        out[label] = {
            "shape": {"keyframes": size, "rgbd": config.rgbd,
                      "observations": float(np.mean([p.num_observations for p in problems])),
                      "points": float(np.mean([p.num_points for p in problems])),
                      "jacobian_rows": float(np.mean([rows_per_obs * p.num_observations for p in problems])),
                      "jacobian_cols": float(np.mean([6 * (~p.fixed_cams).sum() + 3 * p.num_points for p in problems])),
                      "fixed_cameras": int(problems[0].fixed_cams.sum())},
            "reference_median_cost": float(np.median([r.cost for r in refs])),
            "methods": {name: _stats(r, refs[: len(r)]) for name, r in runs.items()},
        }
        stats = out[label]["methods"]
        for name, m in stats.items():
            log(f"[timing] {label}: {name} median {m['median_ms']:.1f} ms, p95 {m['p95_ms']:.1f} ms, "
                f"{100 * m['equal_cost_fraction']:.0f}% at equal cost, {m['median_iterations']:.0f} iterations")
    return out


#: Window classes of the optimum section (50 keyframes each): the monocular ones without depth,
#: the last two without fixed cameras (7-DoF gauge), the last one plain least squares as BAL.
OPTIMUM_CASES = [
    ("RGB-D", WindowConfig()),
    ("monocular, 2 fixed cameras", WindowConfig.monocular(gauge_free=False)),
    ("monocular, no fixed camera", WindowConfig.monocular()),
    ("monocular, no fixed camera, plain LS", WindowConfig.monocular(plain_least_squares=True)),
]
OPTIMUM_METHODS = [("schur", "fp64"), ("iterative_schur", "mixed"), ("iterative_schur", "fp32"),
                   ("iterative_schur", "fp64"), ("cgnr", "mixed"), ("cgnr", "fp32"), ("cgnr", "fp64")]


#: LM settings of the optimum section: the BA defaults (:func:`ba_solver_options`: function
#: tolerance 1e-4 and 30 iterations with depth, 1e-6 and 50 monocular; GTSAM at each window's
#: tolerance) and solved to the optimum (1e-6, 100 iterations; GTSAM at the same tolerance),
#: the latter for the recipe's methods only.
OPTIMUM_SETTINGS = {"default": {}, "tight": {"function_tolerance": 1e-6, "max_iterations": 100}}
OPTIMUM_TIGHT_METHODS = [("schur", "fp64"), ("iterative_schur", "mixed"), ("cgnr", "mixed")]


def optimum_section(per_case: int, seed: int, log: Log, setting: str = "default") -> dict:
    """Final cost of every method against the tight Schur optimum on ``per_case`` windows of each
    :data:`OPTIMUM_CASES` class, with the LM options of ``OPTIMUM_SETTINGS[setting]``: the share
    within ``EQUAL_COST`` (0.1%), the ``converged_*`` terminations above it by more than that
    (target 0), and times with GTSAM's alongside."""
    options = OPTIMUM_SETTINGS[setting]
    tolerance = options.get("function_tolerance")  # None: each window's default
    methods = OPTIMUM_TIGHT_METHODS if setting == "tight" else OPTIMUM_METHODS
    names = [f"{solver}/{mode}" for solver, mode in methods] + ["gtsam"]
    runs: dict[str, dict[str, list[Run]]] = {label: {name: [] for name in names} for label, _ in OPTIMUM_CASES}
    refs: dict[str, list[Run]] = {label: [] for label, _ in OPTIMUM_CASES}
    for case_index, (label, config) in enumerate(OPTIMUM_CASES):
        for index in range(per_case):
            window = generate_window(50, seed + 10_000 * case_index + index, config)
            ref = reference(window)
            refs[label].append(ref)
            for solver, mode in methods:
                preconditioner = "schur_jacobi" if solver == "cgnr" else "none"
                run = _ours(window, mode, solver, preconditioner, **options)
                runs[label][f"{solver}/{mode}"].append(_classify(window, run, ref))
            runs[label]["gtsam"].append(_classify(window, _peer(window, "gtsam", tolerance), ref))
        log(f"[optimum {setting}] {label}: {per_case} windows")
    out: dict = {"windows_per_case": per_case, "tolerance": EQUAL_COST, "setting": setting,
                 "stopping": _stopping(options),
                 "cases": {}, "all": {}}
    for label in refs:
        out["cases"][label] = {name: _optimum_stats(runs[label][name], refs[label]) for name in names}
    for name in names:
        out["all"][name] = _optimum_stats([r for label in refs for r in runs[label][name]],
                                          [r for label in refs for r in refs[label]])
    gtsam = out["all"]["gtsam"]["median_ms"]
    for name, m in out["all"].items():
        log(f"[optimum {setting}] {name}: {100 * m['within_fraction']:.1f}% within {100 * EQUAL_COST:g}% of the optimum, "
            f"{m['converged_above']} converged_* terminations above it ({m['converged_above_short']} short of a "
            f"local minimum), median {m['median_ms']:.1f} ms "
            f"({m['median_ms'] / gtsam:.2f}x GTSAM)")
    return out


def _stopping(options: dict) -> str:
    """The LM stopping of an optimum setting, in words (both kinds of window for the defaults)."""
    depth, mono = ba_solver_options(**options), ba_solver_options(monocular=True, **options)
    if (depth.function_tolerance, depth.max_iterations) == (mono.function_tolerance, mono.max_iterations):
        return f"function tolerance {depth.function_tolerance:g}, at most {depth.max_iterations} LM iterations"
    return (f"function tolerance {depth.function_tolerance:g} and at most {depth.max_iterations} LM iterations "
            f"for windows with depth, {mono.function_tolerance:g} and {mono.max_iterations} monocular")


def _optimum_stats(runs: list[Run], refs: list[Run]) -> dict:
    gaps = np.array([r.cost / ref.cost - 1.0 for r, ref in zip(runs, refs)])
    times = np.array([r.time_s for r in runs])
    above = [r.termination.startswith("converged") and gap > EQUAL_COST for r, gap in zip(runs, gaps)]
    return {
        "windows": len(runs), "within_fraction": float(np.mean(gaps <= EQUAL_COST)),
        "converged_above": int(np.sum(above)),
        "converged_above_short": sum(a and not r.local_minimum for a, r in zip(above, runs)),
        "max_gap": float(np.max(gaps)),
        "median_ms": 1e3 * float(np.median(times)), "p95_ms": 1e3 * float(np.percentile(times, 95)),
        "terminations": {t: sum(r.termination == t for r in runs) for t in sorted({r.termination for r in runs})},
    }


def _pose_errors(T_a: np.ndarray, T_b: np.ndarray, free: np.ndarray) -> tuple[float, float]:
    """RMS translation (m) and rotation (deg) differences over a window's free poses."""
    error = se3_log(se3_inverse(T_b[free]) @ T_a[free])
    translation = np.sqrt(np.mean(np.sum(error[:, :3] ** 2, axis=1)))
    rotation = np.degrees(np.sqrt(np.mean(np.sum(error[:, 3:] ** 2, axis=1))))
    return float(translation), float(rotation)


def accuracy_section(count: int, seed: int, log: Log) -> dict:
    """Pose error of each mode vs the fp64 solution, and fp64 vs ground truth (noise-induced).

    The reference is fp64 converged to ``function_tolerance=1e-12``; every mode runs to
    ``1e-6`` (tighter than the VO default 1e-4, within what float32 costs resolve), so the
    differences are mostly those of precision, not of early stopping.
    """
    modes = {"fp64": {}, "fp32": {}, "mixed": {}, "fp16 (naive)": {"escalate": False}, "fp16 (escalating)": {}}
    errors: dict[str, list[float]] = {name: [] for name in modes}
    rotation: dict[str, list[float]] = {name: [] for name in modes}
    noise_m, noise_deg, escalations = [], [], 0
    for index in range(count):
        window = generate_window(50, seed + index)
        fp64 = _ours(window, "fp64", "cgnr", "schur_jacobi", function_tolerance=1e-12, max_iterations=100)
        free = ~window.problem.fixed_cams
        t, r = _pose_errors(fp64.state.T_world_cam, window.T_world_cam_true, free)
        noise_m.append(t)
        noise_deg.append(r)
        for name, options in modes.items():
            run = _ours(window, name.split()[0], "cgnr", "schur_jacobi",
                        function_tolerance=1e-6, max_iterations=50, **options)
            t, r = _pose_errors(run.state.T_world_cam, fp64.state.T_world_cam, free)
            errors[name].append(t)
            rotation[name].append(r)
            escalations += name == "fp16 (escalating)" and run.escalations > 0
        if (index + 1) % 100 == 0:
            log(f"[accuracy] {index + 1}/{count} windows")
    percentiles = (50, 90, 99)

    def summary(values: list[float]) -> dict:
        return {f"p{q}": float(np.percentile(values, q)) for q in percentiles} | {"max": float(np.max(values))}

    return {
        "windows": count, "keyframes": 50,
        "translation_error_vs_fp64_m": {name: summary(v) for name, v in errors.items()},
        "rotation_error_vs_fp64_deg": {name: summary(v) for name, v in rotation.items()},
        "noise_induced_translation_m": summary(noise_m),
        "noise_induced_rotation_deg": summary(noise_deg),
        "fp16_escalated_fraction": escalations / max(count, 1),
        "samples_m": {name: v for name, v in errors.items()} | {"noise-induced (fp64 vs truth)": noise_m},
    }


class _TimedOperator(SparseOperator):
    """SparseOperator that accumulates the wall time and flops of its products (bench instrumentation)."""

    seconds = 0.0
    products = 0
    flops = 0.0

    def matvec(self, x: np.ndarray) -> np.ndarray:
        return self._timed(super().matvec, x)

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._timed(super().rmatvec, y)

    def _timed(self, product: Callable[[np.ndarray], np.ndarray], v: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = product(v)
        _TimedOperator.seconds += time.perf_counter() - started
        _TimedOperator.products += 1
        _TimedOperator.flops += 2.0 * self._arrays[2].size
        return out


#: (key, solver, preconditioner) of the products section.
PRODUCT_CONFIGS = [("none", "cgnr", "none"), ("block_jacobi_static", "cgnr", "block_jacobi_static"),
                   ("schur_jacobi", "cgnr", "schur_jacobi"),
                   ("iterative_schur", "iterative_schur", "none")]


def _other_flops(ba: BundleAdjustment, key: str, linear_iterations: int, solves: int) -> float:
    """Textbook flop count of everything but the products (x2 per multiply-add).

    CGLS per iteration: x, r, s updates, 3 dots/norms on m- and n-vectors, the p update, and a
    block-Jacobi apply (36 per pose column, 9 per point column); the Schur-Jacobi apply adds two
    landmark solves and two passes over the 6x3 coupling blocks, and its per-solve setup is
    that of the iterative Schur solver. Iterative Schur per iteration:
    the 3x3 landmark solves, the 6x6 Schur-Jacobi apply, ~6 vector operations on the camera
    vector and one m-vector subtraction; per solve the float64 setup (per row ~57, per
    observation ~135, per landmark ~50 multiply-adds, plus the back-substitution).
    """
    s = ba.structure
    m, n, n_pose, points, obs = ba.num_residuals, s.num_columns, s.num_pose_columns, s.num_points, s.obs_cam.size
    per_solve = 2 * (57 * m + 135 * obs + 50 * points + 18 * obs + 9 * points)
    if key != "iterative_schur":
        precond = {"none": 0, "block_jacobi_static": 2 * (6 * n_pose + 9 * points),
                   "schur_jacobi": 2 * (6 * n_pose + 2 * 9 * points + 2 * 18 * obs)}[key]
        setup = solves * per_solve if key == "schur_jacobi" else 0
        return linear_iterations * (2 * (3 * m + 6 * n) + precond) + setup
    per_iteration = 2 * (9 * points + 6 * n_pose + 6 * n_pose + m)
    return linear_iterations * per_iteration + solves * per_solve


def products_section(count: int, seed: int, log: Log) -> dict:
    """Time and flop share of the J products (fp16 in mixed) in the mixed-precision CG solves."""
    originals = cgnr_module.SparseOperator, iterative_schur_module.SparseOperator
    cgnr_module.SparseOperator = iterative_schur_module.SparseOperator = _TimedOperator
    shares, flop_shares = {}, {}
    try:
        for key, solver, preconditioner in PRODUCT_CONFIGS:
            product_s = solve_s = 0.0
            flops_products = flops_other = 0.0
            for index in range(count):
                window = generate_window(50, seed + index)
                _TimedOperator.seconds, _TimedOperator.products, _TimedOperator.flops = 0.0, 0, 0.0
                result = bundle_adjust(window.problem, ba_solver_options("mixed"), solver=solver,
                                       preconditioner=preconditioner)
                product_s += _TimedOperator.seconds
                solve_s += result.summary.timings.linear_solve_s
                flops_products += _TimedOperator.flops
                flops_other += _other_flops(BundleAdjustment(window.problem), key, result.summary.linear_iterations,
                                            len(result.summary.iterations))
            shares[key] = product_s / solve_s
            flop_shares[key] = flops_products / (flops_products + flops_other)
            log(f"[products] mixed {solver}, {preconditioner}: {100 * shares[key]:.0f}% of linear-solve time, "
                f"{100 * flop_shares[key]:.0f}% of flops in the J products")
    finally:
        cgnr_module.SparseOperator, iterative_schur_module.SparseOperator = originals
    return {"time_share": shares, "flop_share": flop_shares, "windows": count,
            "note": "CPU emulation of fp16: product time includes rounding to fp16; timed via SparseOperator"}
