"""GPU micro-benchmark of the recipe's PGO claim: the incomplete-Cholesky (IC) triangular solves
of CGNR's static preconditioner take about 26% less time with the factor in fp16 than in fp32
(needs CuPy and a CUDA device; run by bench/gpu_check.sh).

Factors: the recipe's IC (drop tolerance ``DEFAULT_DROP_TOLERANCE``, AMD ordering by pose
blocks) of the reference normal matrix of a household 3-D graph (2,500 poses), a city 2-D graph
(10,000 poses) and, where GTSAM's wheel is installed, iSAM's public ``sphere2500`` (resolved
through ``import gtsam``; skipped without it). Each dtype's factor is the one the solver would
use (fp16: every entry rounded to float16 as it is computed). Side by side in one run:

* ``solves``: ``L`` then ``U = L^T`` on a vector in the factor's ordering: cuSPARSE fp32
  (``cupyx.scipy.sparse.linalg.spsolve_triangular``, the CUDA path before
  ``cuda_trisolve``) and the native sync-free kernel (:mod:`.cuda_trisolve`) with fp64, fp32 and
  fp16 values;
* ``apply``: the preconditioner as CGNR calls it (``IncompleteCholesky.apply`` on CUDA:
  permutation, fp16 input scaling, the two solves, the status read), and the former cuSPARSE
  ``_apply_cuda`` in fp32 and with the fp16 factor in fp32 (what the mixed recipe ran before).

Every answer is checked first: against the CPU kernel of the same dtype (the emulation the
solver runs on the CPU; the gate: a variant outside ``_AGREEMENT`` is reported WRONG and not
timed) and against a float64 solve on the same stored values (printed). Then CUDA-event
medians of ``--repeats`` after warm-ups, the microseconds per dependency level of the factor
(the solve's critical path), and the ratios: kernel fp16/fp32, fp16/cuSPARSE fp32, apply
fp16/fp32. The kernels run with a ``--timeout-s`` watchdog: a deadlock ends as a reported
failure, not a hang.

    python bench/gpu_trisolve.py [--repeats 20] [--timeout-s 2]

Exit status: 0 when every variant was checked and timed; 1 when one was wrong or its watchdog
fired; 2 (one line on stderr, nothing measured) when CuPy or a CUDA device is missing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numba
import numpy as np

from gpu_spmv import cuda_median_s, print_ratios, relative_error
from pgo_hard_suite import public_cases

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.precision import Backend, ProblemKind, cuda_available, precision_policy
from mp_slam_ros.sim.pose_graphs import city_graph, household_graph
from mp_slam_ros.solvers.linear.cuda_trisolve import CudaSolveTimeout, CudaTriangularFactor
from mp_slam_ros.solvers.linear.ichol import IncompleteCholesky, IncompleteCholeskyFactory, _Factor, _triangular_solves
from mp_slam_ros.solvers.pgo import DEFAULT_DROP_TOLERANCE, PoseGraphProblem

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
#: Norm-wise relative agreement with the CPU kernel of the same dtype required before timing
#: (summation order; fp16 unknowns may round to a neighbouring half value; a bug gives ~1).
_AGREEMENT = {"float64": 1e-9, "float32": 1e-4, "float16": 2e-2}


@numba.njit(cache=True)
def dependency_levels(ptr, idx):  # type: ignore[no-untyped-def]
    """Length of the longest dependency chain of a lower-triangular CSR solve (its levels)."""
    n = ptr.size - 1
    level = np.zeros(n, dtype=np.int64)
    longest = 0
    for i in range(n):
        deepest = 0
        for p in range(ptr[i], ptr[i + 1]):
            j = idx[p]
            if j != i and level[j] > deepest:
                deepest = level[j]
        level[i] = deepest + 1
        longest = max(longest, deepest + 1)
    return longest


def graphs() -> list[tuple[str, Callable[[], PoseGraph]]]:
    """``(name, make)`` of the benchmarked graphs; ``sphere2500`` only where GTSAM's data is."""
    cases: list[tuple[str, Callable[[], PoseGraph]]] = [
        ("household3d-2500", lambda: household_graph(2500, dim=3, seed=0).graph),
        ("city2d-10000", lambda: city_graph(10000, seed=0).graph),
    ]
    public = [case for case in public_cases() if case.name == "sphere2500"]
    if public:
        cases.append(("sphere2500 (public)", lambda: public[0].load(Path(tempfile.gettempdir()))[0]))
    else:
        print("sphere2500: skipped (GTSAM's Data folder not found: no gtsam package)", flush=True)
    return cases


def preconditioner(graph: PoseGraph) -> IncompleteCholesky:
    """The recipe's IC preconditioner of ``graph`` (CUDA backend), factored in every dtype."""
    problem = PoseGraphProblem(graph)
    reference = problem.reference_jacobian()
    factory = IncompleteCholeskyFactory(
        drop_tolerance=DEFAULT_DROP_TOLERANCE, block_size=problem.tangent_dim, reference_jacobian=reference)
    ic = factory(reference, 0.0, precision_policy("fp32", ProblemKind.PGO), Backend.CUDA)
    for dtype in (_F16, _F64):
        ic.factor(dtype)
    return ic


def cusparse_solves(factor: _Factor) -> Callable[[object], object]:
    """``b -> U^-1 L^-1 b`` by cuSPARSE on ``factor``'s values (float32: fp16 values too)."""
    from cupyx.scipy import sparse as cusparse
    from cupyx.scipy.sparse.linalg import spsolve_triangular

    lower, upper = cusparse.csr_matrix(factor.lower), cusparse.csr_matrix(factor.upper)

    def solves(b: object, round16: bool = False) -> object:
        # CuPy returns float64 from a float32 solve: cast back, as the former _apply_cuda did
        y = spsolve_triangular(lower, b, lower=True).astype(lower.dtype, copy=False)
        if round16:
            y = y.astype(np.float16).astype(np.float32)
        return spsolve_triangular(upper, y, lower=False).astype(lower.dtype, copy=False)

    return solves


def former_apply(factor: _Factor, perm: np.ndarray, round16: bool) -> Callable[[object], object]:
    """The CUDA ``IncompleteCholesky._apply_cuda`` before ``cuda_trisolve`` (cuSPARSE; the fp16
    factor's values in float32, unknowns rounded to float16 after each whole solve)."""
    import cupy

    solves, perm_d = cusparse_solves(factor), cupy.asarray(perm)

    def apply(s: object) -> object:
        z_perm = solves(s.astype(factor.lower.dtype)[perm_d], round16)
        if round16:
            z_perm = z_perm.astype(np.float16).astype(np.float32)
        z = cupy.empty_like(z_perm)
        z[perm_d] = z_perm
        return z.astype(s.dtype)

    return apply


def run_variant(label: str, run: Callable[[], object], expected: np.ndarray, exact: np.ndarray, dtype: np.dtype,
                repeats: int, check: Callable[[], None], levels: int) -> float | None:
    """Check ``run`` (vs the same-dtype CPU ``expected`` and the float64 ``exact``), then time it
    and print one line; ``None`` (not timed) for a wrong answer or a watchdog time-out."""
    try:
        got = run()
        check()
        agreement, accuracy = relative_error(got, expected), relative_error(got, exact)
        errors = f"vs cpu {dtype.name} {agreement:.1e}  vs float64 {accuracy:.1e}"
        if not agreement <= _AGREEMENT[dtype.name]:
            print(f"  {label:30s} {errors}  <-- WRONG ANSWER, not timed", flush=True)
            return None
        seconds = cuda_median_s(run, repeats)
        check()  # a watchdog that fired during the timed runs voids them
    except CudaSolveTimeout as error:
        print(f"  {label:30s} WATCHDOG: {error}", flush=True)
        return None
    print(f"  {label:30s} {errors}  {seconds * 1e6:9.1f} us  ({seconds * 1e6 / max(levels, 1):.2f} us/level)", flush=True)
    return seconds


def bench_graph(name: str, make: Callable[[], PoseGraph], repeats: int, timeout_s: float) -> int:
    """Check then time every variant on ``make()``'s IC factors; return the failed variants."""
    import cupy

    started = time.perf_counter()
    ic = preconditioner(make())
    cpu_ic = replace(ic, backend=Backend.CPU)  # shares the factors
    factors = {dtype: ic.factor(dtype) for dtype in (_F64, _F32, _F16)}
    n = ic.normal.shape[0]
    levels = int(dependency_levels(factors[_F32].lower.indptr, factors[_F32].lower.indices))
    print(f"\n{name}: n {n}, L {factors[_F32].lower.nnz / 1e6:.2f} M non-zeros (fp32; fp16 "
          f"{factors[_F16].lower.nnz / 1e6:.2f} M), {levels} dependency levels, shifts {ic.shifts}; "
          f"built in {time.perf_counter() - started:.1f} s", flush=True)
    if not all(factor.ok for factor in factors.values()):
        print("  a factorization broke down: nothing to time", flush=True)
        return 1
    rng = np.random.default_rng(0)
    b64, s64 = rng.uniform(-1.0, 1.0, n), rng.standard_normal(n)
    failed, solve_times, apply_times = 0, {}, {}

    def cpu_solves(factor: _Factor, b: np.ndarray, round16: bool) -> np.ndarray:
        return _triangular_solves(*factor.kernel_arrays, b.astype(factor.lower.dtype), round16)

    def exact_solves(factor: _Factor, b: np.ndarray) -> np.ndarray:
        l_ptr, l_idx, l_val, u_ptr, u_idx, u_val = factor.kernel_arrays
        return _triangular_solves(l_ptr, l_idx, l_val.astype(np.float64), u_ptr, u_idx, u_val.astype(np.float64),
                                  b.astype(np.float64), False)

    # 1. the two solves alone, in the factor's ordering
    b32 = b64.astype(np.float32)
    solves = cusparse_solves(factors[_F32])
    b_device = cupy.asarray(b32)
    solve_times["cusparse float32"] = run_variant(
        "solves cusparse float32", lambda: solves(b_device), cpu_solves(factors[_F32], b32, False),
        exact_solves(factors[_F32], b32), _F32, repeats, lambda: None, levels)
    for dtype in (_F64, _F32, _F16):
        factor, b = factors[dtype], b64.astype(dtype)
        kernel = CudaTriangularFactor(factor.lower, factor.upper, dtype, timeout_s=timeout_s)
        b_device = cupy.asarray(b)
        solve_times[f"kernel {dtype.name}"] = run_variant(
            f"solves kernel {dtype.name}", lambda kernel=kernel, b_device=b_device: kernel.solve(b_device),
            cpu_solves(factor, b, dtype == _F16), exact_solves(factor, b), dtype, repeats,
            lambda kernel=kernel: kernel.L.check(), levels)
    print_ratios("solves", solve_times, {
        "kernel fp16/fp32": ("kernel float16", "kernel float32"),
        "kernel fp16/cusparse fp32": ("kernel float16", "cusparse float32"),
        "kernel fp32/cusparse fp32": ("kernel float32", "cusparse float32"),
        "kernel fp64/fp32": ("kernel float64", "kernel float32"),
    })

    # 2. the preconditioner as CGNR applies it (float32 vectors; float64 for the fp64 factor)
    for dtype, factor in factors.items():  # the kernels IncompleteCholesky.apply uses, with the bench's watchdog
        factor.device = CudaTriangularFactor(factor.lower, factor.upper, dtype, ic.perm, timeout_s=timeout_s)
    for label, dtype, run in (
        ("apply former cusparse float32", _F32, former_apply(factors[_F32], ic.perm, False)),
        ("apply former cusparse float16", _F16, former_apply(factors[_F16], ic.perm, True)),
        *((f"apply kernel {dtype.name}", dtype, lambda s, dtype=dtype: ic.apply(s, dtype)) for dtype in (_F64, _F32, _F16)),
    ):
        s = s64.astype(np.float64 if dtype == _F64 else np.float32)
        s_device = cupy.asarray(s)
        exact = replace(cpu_ic, _factors={"float64": _exact_copy(factors[dtype])}).apply(s64, _F64)
        apply_times[label.removeprefix("apply ")] = run_variant(
            label, lambda run=run, s_device=s_device: run(s_device), cpu_ic.apply(s, dtype), exact, dtype,
            repeats, lambda: None, levels)
    print_ratios("apply", apply_times, {
        "kernel fp16/fp32": ("kernel float16", "kernel float32"),
        "kernel fp16/former fp32": ("kernel float16", "former cusparse float32"),
        "kernel fp32/former fp32": ("kernel float32", "former cusparse float32"),
        "former fp16/fp32": ("former cusparse float16", "former cusparse float32"),
    })
    failed += sum(seconds is None for seconds in (*solve_times.values(), *apply_times.values()))
    return failed


def _exact_copy(factor: _Factor) -> _Factor:
    """``factor``'s stored values in float64 (the reference solve of the same factor)."""
    return _Factor(factor.lower.astype(np.float64), factor.upper.astype(np.float64), factor.ok)


def main() -> int:
    """Run the benchmark (module docstring for the exit status)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--timeout-s", type=float, default=2.0, help="the kernels' watchdog, per wait")
    args = parser.parse_args()
    if not cuda_available():
        print("gpu_trisolve: no CUDA device (CuPy missing or it sees none): nothing measured", file=sys.stderr)
        return 2
    started, failed = time.perf_counter(), 0
    for name, make in graphs():
        failed += bench_graph(name, make, args.repeats, args.timeout_s)
    print(f"\n{failed} variant(s) wrong or stopped by the watchdog (not timed)" if failed
          else "\nevery variant checked before timing", f"; {time.perf_counter() - started:.0f} s", sep="", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
