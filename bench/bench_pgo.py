"""Pose-graph optimization benchmark: every precision mode side by side with GTSAM 4.3 LM.

For each problem (generated household / sphere / grid graphs of increasing size, plus any .g2o
file on the command line) this runs, in the same process and one after the other:

* ``cholesky`` fp64 (the accuracy reference) and ``cgnr_ic`` in fp64, fp32, mixed and fp16;
* GTSAM's Levenberg-Marquardt (BetweenFactor + a prior on the anchor, multifrontal Cholesky,
  COLAMD) with the same relative-decrease stopping rule (1e-6).

It checks the answers before the times: every final estimate (ours and GTSAM's) is scored with
the same fp64 code (chi2 = sum of squared Mahalanobis errors), GTSAM's own ``2 * error`` is kept
as a cross-check, and the time ratio to GTSAM is reported next to the chi2 ratio. Our time is
``optimize_pose_graph`` from a PoseGraph (validation, setup, preconditioner included); GTSAM's is
``optimize()`` on an already built factor graph. numba kernels are compiled before timing.

A second part solves many small graphs (800 in the full run) and records the error of every pose
of each mode against the fp64 solution, for the cumulative histogram.

``--suite hard`` runs instead the hard cases of issue 9 (edges-only 10k-pose city grid from dead
reckoning, anisotropic and indefinite 3-D garage, tiny graphs) through the g2o reader, against
GTSAM, with a pass/fail per case and the count of false convergences: see ``pgo_hard_suite.py``
(outputs ``hard.json`` and ``summary.md`` in ``--out``, default results/pgo_hard).

Outputs (``--out``, default results/pgo): ``bench_pgo.json``, ``time_vs_poses.png``,
``pose_error_cdf.png``, ``summary.md``. ``--quick`` runs a small subset in about a minute;
``--only NAME ...`` (e.g. ``sphere3d-2500``) times just those problems; with
``--histogram-problems 0`` only the timing lines are printed and nothing is written.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # a shared 2-core box: no BLAS thread fights

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pgo_hard_suite import hard_cases, public_cases, run_hard_suite  # noqa: E402

from mp_slam_ros.backend.pose_graph import PoseGraph  # noqa: E402
from mp_slam_ros.geometry import lie  # noqa: E402
from mp_slam_ros.io.g2o import read_g2o  # noqa: E402
from mp_slam_ros.sim.pose_graphs import grid_graph, household_graph, sphere_graph  # noqa: E402
from mp_slam_ros.solvers.pgo import PoseGraphProblem, default_options, optimize_pose_graph  # noqa: E402

#: (solver, precision mode, label): "fp16-noesc" is naive fp16 with escalation off (the failure).
MODES = [("cholesky", "fp64", "fp64"), ("cgnr_ic", "fp64", "fp64"), ("cgnr_ic", "fp32", "fp32"),
         ("cgnr_ic", "mixed", "mixed"), ("cgnr_ic", "fp16", "fp16"), ("cgnr_ic", "fp16", "fp16-noesc")]
RELATIVE_TOLERANCE = 1e-6
GENERATORS: dict[str, Callable[[int, int], PoseGraph]] = {
    # Household graphs start from the ground truth perturbed per pose (0.3 m, 0.05 rad), as in
    # an incremental loop-closure system: from dead reckoning over 6 km (20,000 poses) neither
    # GTSAM nor we converge (both stop after 100 iterations at chi2 ~2e7; measured).
    "household3d": lambda n, seed: household_graph(n, dim=3, seed=seed, initial="perturbed").graph,
    "sphere3d": lambda n, seed: sphere_graph(n, seed=seed).graph,
    "grid3d": lambda n, seed: grid_graph(n, dim=3, seed=seed).graph,
    "grid2d": lambda n, seed: grid_graph(n, dim=2, seed=seed).graph,
}
FULL_SIZES = {
    "household3d": [100, 500, 1000, 2500, 5000, 10000, 20000],
    "sphere3d": [2500, 10000],
    "grid3d": [2500, 10000],
}
QUICK_SIZES = {"household3d": [100, 500, 2500], "sphere3d": [2500]}


def gtsam_factor_graph(graph: PoseGraph) -> tuple[object, Callable[[np.ndarray], object]]:
    """GTSAM's factor graph of ``graph`` (BetweenFactors + a tight prior on the anchor) and a
    function turning poses ``(N, d+1, d+1)`` into GTSAM ``Values``."""
    import gtsam  # noqa: PLC0415

    three_d = graph.dim == 3
    order = [3, 4, 5, 0, 1, 2] if three_d else [0, 1, 2]  # GTSAM Pose3 tangents: rotation first
    pose = gtsam.Pose3 if three_d else gtsam.Pose2
    between = gtsam.BetweenFactorPose3 if three_d else gtsam.BetweenFactorPose2
    prior = gtsam.PriorFactorPose3 if three_d else gtsam.PriorFactorPose2

    def to_gtsam(T: np.ndarray) -> object:  # gtsam.Pose2 has no constructor from a 3x3 matrix
        return pose(T) if three_d else pose(*lie.se2_to_xytheta(T[None])[0])

    def values_of(T_world_node: np.ndarray) -> object:
        values = gtsam.Values()
        for node, T in zip(graph.node_ids.tolist(), T_world_node):
            values.insert(node, to_gtsam(T))
        return values

    factors = gtsam.NonlinearFactorGraph()
    for i, j, T, info in zip(graph.edge_from.tolist(), graph.edge_to.tolist(), graph.T_from_to, graph.information):
        noise = gtsam.noiseModel.Gaussian.Information(info[np.ix_(order, order)])
        factors.add(between(i, j, to_gtsam(T), noise))
    anchor = graph.anchor_index()
    sigma = gtsam.noiseModel.Isotropic.Sigma(graph.tangent_dim, 1e-6)
    factors.add(prior(int(graph.node_ids[anchor]), to_gtsam(graph.T_world_node[anchor]), sigma))
    return factors, values_of


def gtsam_solve(graph: PoseGraph) -> tuple[np.ndarray, int, float, float]:
    """GTSAM LM on ``graph``: (poses, iterations, seconds in optimize(), GTSAM's chi2)."""
    import gtsam  # noqa: PLC0415

    factors, values_of = gtsam_factor_graph(graph)
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(RELATIVE_TOLERANCE)
    params.setAbsoluteErrorTol(0.0)
    params.setMaxIterations(100)
    optimizer = gtsam.LevenbergMarquardtOptimizer(factors, values_of(graph.T_world_node), params)
    started = time.perf_counter()
    result = optimizer.optimize()
    seconds = time.perf_counter() - started
    at = result.atPose3 if graph.dim == 3 else result.atPose2
    poses = np.stack([at(node).matrix() for node in graph.node_ids.tolist()])
    return poses, int(optimizer.iterations()), seconds, 2.0 * factors.error(result)


def ours(graph: PoseGraph, solver: str, mode: str, escalate: bool = True) -> tuple[np.ndarray, dict, float]:
    """Our solve: (poses, summary dict, seconds)."""
    started = time.perf_counter()
    result = optimize_pose_graph(graph, default_options(precision=mode, escalate=escalate), solver=solver)
    seconds = time.perf_counter() - started
    return result.graph.T_world_node, result.summary.to_dict(), seconds


def pose_errors(T: np.ndarray, T_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pose translation (m) and rotation (rad) differences."""
    d = T.shape[-1] - 1
    translation = np.linalg.norm(T[:, :d, d] - T_ref[:, :d, d], axis=1)
    R_delta = np.swapaxes(T_ref[:, :d, :d], 1, 2) @ T[:, :d, :d]
    if d == 3:
        cos = np.clip((np.trace(R_delta, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
        return translation, np.arccos(cos)
    return translation, np.abs(np.arctan2(R_delta[:, 1, 0], R_delta[:, 0, 0]))


def run_problem(name: str, graph: PoseGraph, repeats: int, with_fp16: bool) -> list[dict]:
    """All modes and GTSAM on one graph; rows with chi2, iterations, time, ratios."""
    problem = PoseGraphProblem(graph)
    rows, reference = [], None
    gtsam_poses, gtsam_iterations, gtsam_seconds, gtsam_own_chi2 = gtsam_solve(graph)
    for _ in range(repeats - 1):
        gtsam_seconds = min(gtsam_seconds, gtsam_solve(graph)[2])
    gtsam_chi2 = problem.chi2(gtsam_poses)
    base = dict(problem=name, poses=graph.num_nodes, edges=graph.num_edges, dim=graph.dim)
    for solver, mode, label in MODES:
        if mode == "fp16" and not with_fp16:
            continue
        escalate = label != "fp16-noesc"
        poses, summary, seconds = ours(graph, solver, mode, escalate)
        for _ in range(repeats - 1):
            seconds = min(seconds, ours(graph, solver, mode, escalate)[2])
        if reference is None:
            reference = poses
        chi2 = problem.chi2(poses)
        translation, rotation = pose_errors(poses, reference)
        rows.append(dict(
            base, solver=solver, mode=label, chi2=chi2, iterations=summary["num_iterations"],
            linear_iterations=summary["linear_iterations"], time_s=seconds, precision_used=summary["precision_used"],
            escalations=len(summary["escalations"]), converged=summary["converged"],
            preconditioner_shifts=summary["preconditioner_shifts"], timings=summary["timings"],
            max_translation_error_m=float(translation.max()), max_rotation_error_rad=float(rotation.max()),
        ))
    reference_chi2 = rows[0]["chi2"]
    rows.append(dict(base, solver="gtsam", mode="gtsam_lm", chi2=gtsam_chi2, gtsam_own_chi2=gtsam_own_chi2,
                     iterations=gtsam_iterations, time_s=gtsam_seconds, converged=True))
    for row in rows:
        row["chi2_rel_to_fp64"] = (row["chi2"] - reference_chi2) / reference_chi2
        row["chi2_ratio_to_gtsam"] = row["chi2"] / gtsam_chi2
        row["time_ratio_to_gtsam"] = row["time_s"] / gtsam_seconds
    return rows


def histogram_problems(count: int) -> dict[str, list[float]]:
    """Solve ``count`` small graphs in every mode; per-pose translation errors vs fp64 (m)."""
    kinds = [("household3d", 300, 600), ("grid3d", 80, 250), ("grid2d", 80, 250), ("sphere3d", 64, 256)]
    modes = {"cgnr_ic fp64": ("fp64", True), "fp32": ("fp32", True), "mixed": ("mixed", True),
             "fp16": ("fp16", True), "fp16-noesc": ("fp16", False)}
    errors: dict[str, list[np.ndarray]] = {key: [] for key in modes}
    chi2_rel: dict[str, list[float]] = {key: [] for key in errors}
    rng = np.random.default_rng(2024)
    for index in range(count):
        kind, low, high = kinds[index % len(kinds)]
        graph = GENERATORS[kind](int(rng.integers(low, high)), 1000 + index)
        problem = PoseGraphProblem(graph)
        reference, _, _ = ours(graph, "cholesky", "fp64")
        reference_chi2 = problem.chi2(reference)
        for key, (mode, escalate) in modes.items():
            poses, _, _ = ours(graph, "cgnr_ic", mode, escalate)
            errors[key].append(pose_errors(poses, reference)[0])
            chi2_rel[key].append((problem.chi2(poses) - reference_chi2) / reference_chi2)
    return compact_histogram({k: np.concatenate(v) for k, v in errors.items()}, chi2_rel)


#: Levels of the stored error quantiles (the cumulative histogram, ~1000 points per mode).
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)


def compact_histogram(errors: dict[str, np.ndarray], chi2_rel: dict[str, list[float]]) -> dict:
    """Per-mode quantiles of the pose errors (the CDF) and the per-problem chi2 differences."""
    return {
        "levels": QUANTILE_LEVELS.tolist(),
        "translation_error_quantiles_m": {k: np.quantile(v, QUANTILE_LEVELS).tolist() for k, v in errors.items()},
        "poses": {k: int(v.size) for k, v in errors.items()},
        "chi2_rel_to_fp64": chi2_rel,
    }


def warm_up() -> None:
    """Compile every numba kernel (all dtypes) before anything is timed: each mode once as
    chosen and once forced onto the iterative path (these small graphs would go to the direct
    solver, and a fresh clone has no numba cache: the first 3-D CG solve in fp32 then took 3.9 s
    of compilation inside the timed household3d-5000 row)."""
    for make in (lambda: household_graph(200, dim=3, seed=0).graph, lambda: grid_graph(100, dim=2, seed=0).graph):
        graph = make()
        for solver, mode, _ in MODES:
            options = default_options(precision=mode)
            optimize_pose_graph(graph, options, solver=solver)
            iterative = replace(options.linear, direct_max_parameters=0, race_iterations=0, fallback=False)
            optimize_pose_graph(graph, replace(options, linear=iterative), solver=solver)


def plot(rows: list[dict], histogram: dict, out: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 5))
    series = sorted({(r["solver"], r["mode"]) for r in rows if r["problem"].startswith("household3d")})
    for solver, mode in series:
        points = sorted((r["poses"], r["time_s"]) for r in rows
                        if r["problem"].startswith("household3d") and r["solver"] == solver and r["mode"] == mode)
        label = "GTSAM LM" if solver == "gtsam" else f"{solver} {mode}"
        ax.loglog(*zip(*points), marker="o", label=label, linestyle="--" if solver == "gtsam" else "-")
    ax.set_xlabel("poses (household 3-D graph)")
    ax.set_ylabel("wall time [s]")
    ax.set_title("PGO solve time vs poses (2-core CPU; fp16 emulated)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "time_vs_poses.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for key, quantiles in histogram["translation_error_quantiles_m"].items():
        ax.semilogx(np.maximum(quantiles, 1e-12), histogram["levels"], label=key)
    ax.set_xlim(left=1e-9)
    ax.set_xlabel("position error vs fp64 cholesky solution [m] (anchor: 0)")
    ax.set_ylabel("fraction of poses")
    problems = len(next(iter(histogram["chi2_rel_to_fp64"].values())))
    ax.set_title(f"Cumulative pose error over {problems} problems")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pose_error_cdf.png", dpi=120)
    plt.close(fig)


def summary_table(rows: list[dict], histogram: dict) -> str:
    lines = [
        "| problem | poses | edges | solver | mode | chi2 | chi2 vs fp64 | iters | time [s] | time / GTSAM | precision used |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['problem']} | {r['poses']} | {r['edges']} | {r['solver']} | {r['mode']} | {r['chi2']:.6g} | "
            f"{r['chi2_rel_to_fp64']:+.1e} | {r['iterations']} | {r['time_s']:.3f} | {r['time_ratio_to_gtsam']:.2f} | "
            f"{r.get('precision_used', '-')} |"
        )
    lines += ["", "| mode | problems | chi2 within 0.1% of fp64 | median pos. error [m] | 99% [m] | max [m] |",
              "|---|---:|---:|---:|---:|---:|"]
    levels = np.asarray(histogram["levels"])
    for key, rel in histogram["chi2_rel_to_fp64"].items():
        quantiles = np.asarray(histogram["translation_error_quantiles_m"][key])
        median, p99 = np.interp([0.5, 0.99], levels, quantiles)
        within = sum(r <= 1e-3 for r in rel)
        lines.append(f"| {key} | {len(rel)} | {within} | {median:.1e} | {p99:.1e} | {quantiles[-1]:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="extra .g2o files to benchmark")
    parser.add_argument("--quick", action="store_true", help="a short run (small sizes, 40 histogram problems)")
    parser.add_argument("--histogram-problems", type=int, default=None, help="default 800 (quick: 40)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per solve (the minimum is kept)")
    parser.add_argument("--fp16-max-poses", type=int, default=10000, help="skip naive fp16 above this size")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="run only the problems named so, e.g. sphere3d-2500 household3d-10000")
    parser.add_argument("--suite", choices=("default", "hard", "public"), default="default",
                        help="default: the scaling suite; hard: the hard cases of issue 9 (pgo_hard_suite.py); "
                        "public: the public graphs GTSAM's wheel ships (w10000, w20000, sphere2500, ...)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results/pgo (hard suite: results/pgo_hard, public: results/pgo_public)")
    args = parser.parse_args()
    warm_up()
    if args.suite != "default":
        if args.files:
            parser.error(f"the {args.suite} suite takes no files")
        cases = hard_cases(args.quick) if args.suite == "hard" else public_cases()
        if not cases:
            parser.error("no public graphs found (they come with the gtsam package)")
        run_hard_suite(cases, args.repeats, args.only, args.out or Path(f"results/pgo_{args.suite}"), ours,
                       gtsam_solve, gtsam_factor_graph)
        return
    args.out = args.out or Path("results/pgo")
    args.out.mkdir(parents=True, exist_ok=True)
    problems = [(f"{kind}-{n}", lambda kind=kind, n=n: GENERATORS[kind](n, 0))
                for kind, sizes in (QUICK_SIZES if args.quick else FULL_SIZES).items() for n in sizes]
    problems += [(path.stem, lambda path=path: read_g2o(path)) for path in args.files]
    if args.only is not None:
        problems = [(name, make) for name, make in problems if name in args.only]
    rows: list[dict] = []
    for name, make in problems:
        graph = make()
        problem_rows = run_problem(name, graph, args.repeats, graph.num_nodes <= args.fp16_max_poses)
        rows += problem_rows
        for r in problem_rows:
            print(f"{name:18s} {r['solver']:8s} {r['mode']:8s} chi2 {r['chi2']:.10g} ({r['chi2_rel_to_fp64']:+.1e}) "
                  f"iters {r['iterations']:3d} time {r['time_s']:7.3f} s  x{r['time_ratio_to_gtsam']:.2f} GTSAM", flush=True)
    count = args.histogram_problems if args.histogram_problems is not None else (40 if args.quick else 800)
    if count == 0:  # a focused timing run: nothing is written
        return
    started = time.perf_counter()
    histogram = histogram_problems(count)
    print(f"histogram: {count} problems in {time.perf_counter() - started:.0f} s", flush=True)
    meta = dict(machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                python=platform.python_version(), quick=args.quick, relative_tolerance=RELATIVE_TOLERANCE,
                note="fp16 is emulated on this CPU (values truly rounded to float16); speed gains need a GPU")
    (args.out / "bench_pgo.json").write_text(json.dumps(dict(meta=meta, rows=rows, histogram=histogram)))
    table = summary_table(rows, histogram)
    (args.out / "summary.md").write_text(table)
    plot(rows, histogram, args.out)
    print(table)


if __name__ == "__main__":
    main()
