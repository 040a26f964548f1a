"""GPU micro-benchmark of the recipe's BA claim: the products ``J p`` and ``J^T q`` in fp16 take
at least 41% less time than in fp32 (needs CuPy and a CUDA device; run by bench/gpu_check.sh).

Jacobians: the scaled Jacobian of a generated 50-keyframe BA window (as CGNR multiplies it) and
of a 2,500-pose 3-D pose graph, each alone (small: launch-bound) and tiled block-diagonally to
about ``--nnz`` non-zeros (large: memory-bound; the same row and column statistics). For each:

* every product is first checked against SciPy in float64 (norm-wise relative error; fp16 rows
  round the values and the input to float16, so their error is ~1e-3 by design);
* then timed with CUDA events, median of ``--repeats`` after warm-ups: cuSPARSE (CuPy) CSR in
  fp64 and fp32, this package's kernel (``cuda_spmv``) in CSR and in BSR (blocks picked by
  ``block_size_for``) in fp64, fp32 and native fp16, and ``SparseOperator`` end to end (what the
  solver pays: fp16 adds the input scaling and the output rounding);
* ratios are printed from the one run: fp16/fp32 for the same kernel and format, fp16 BSR vs
  cuSPARSE fp32 CSR, the operators; for the tiled Jacobians, the BSR kernel with 1 to 32
  threads per row.

    python bench/gpu_spmv.py [--nnz 40000000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend
from mp_slam_ros.sim.ba_windows import generate_window
from mp_slam_ros.sim.pose_graphs import household_graph
from mp_slam_ros.solvers.ba import BundleAdjustment
from mp_slam_ros.solvers.linear.base import ScaledSystem
from mp_slam_ros.solvers.linear.cuda_spmv import CudaBlockSparseMatrix
from mp_slam_ros.solvers.linear.operators import SparseOperator
from mp_slam_ros.solvers.pgo import PoseGraphProblem

_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))
#: Norm-wise relative error accepted against the float64 product per storage dtype.
_TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-2}


def _scaled(jacobian: sp.csr_matrix, residual: np.ndarray) -> sp.csr_matrix:
    return ScaledSystem.from_linearization(jacobian, residual).jacobian_scaled.tocsr()


def ba_jacobian() -> sp.csr_matrix:
    """Scaled Jacobian ``(M, n)`` of a generated 50-keyframe window at its initial state."""
    problem = BundleAdjustment(generate_window(50, 101).problem)
    lin = problem.linearize(problem.initial_state(), np.dtype(np.float64))
    return _scaled(lin.jacobian, lin.residual)


def pgo_jacobian() -> sp.csr_matrix:
    """Scaled Jacobian of a 2,500-pose 3-D household pose graph at its initial state."""
    problem = PoseGraphProblem(household_graph(2500, dim=3, seed=0).graph)
    lin = problem.linearize(problem.initial_state(), np.dtype(np.float64))
    return _scaled(lin.jacobian, lin.residual)


def cuda_median_s(run: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``run`` on the GPU (CUDA events around each call, after 3 warm-ups)."""
    import cupy

    for _ in range(3):
        run()
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
    return statistics.median(times)


def stored(M: sp.csr_matrix, dtype: np.dtype) -> sp.csr_matrix:
    """``M`` with its values rounded to ``dtype`` (as a kernel stores them), in float64."""
    return sp.csr_matrix((M.data.astype(dtype).astype(np.float64), M.indices, M.indptr), shape=M.shape)


def relative_error(got: object, expected: np.ndarray) -> float:
    """``||got - expected|| / ||expected||`` in float64 (``got`` a device or host array)."""
    got = np.asarray(got.get() if hasattr(got, "get") else got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.linalg.norm(got - expected) / max(float(np.linalg.norm(expected)), 1e-300))


def print_ratios(kind: str, times: dict[str, float | None], ratios: dict[str, tuple[str, str]]) -> None:
    """One line of the ratios whose two times exist."""
    cells = [f"{name} {times[a] / times[b]:.2f}" for name, (a, b) in ratios.items() if times.get(a) and times.get(b)]
    print(f"  {kind} ratios: " + ("  ".join(cells) if cells else "none (a variant was not timed)"), flush=True)


def lanes_sweep(label: str, M: sp.csr_matrix, x: np.ndarray, repeats: int) -> int:
    """Time the BSR kernel with 1 to 32 threads per row (fp16 and fp32; a fifth of the repeats),
    checked first: the measurement behind ``cuda_spmv.lanes_for``."""
    import cupy

    failed = 0
    for dtype in _DTYPES[1:]:
        reference = stored(M, dtype) @ x.astype(dtype).astype(np.float64)
        xd, cells = cupy.asarray(x.astype(dtype)), []
        for lanes in (1, 2, 4, 8, 16, 32):
            kernel = CudaBlockSparseMatrix(M, dtype, None, lanes)
            ok = relative_error(kernel.dot(xd), reference) <= _TOLERANCE["float32"]
            failed += not ok
            seconds = cuda_median_s(lambda kernel=kernel: kernel.dot(xd), max(5, repeats // 5))
            cells.append(f"{lanes}: {seconds * 1e6:.0f}{'' if ok else ' WRONG'}")
        print(f"  {label:6s} lanes sweep bsr {dtype.name} (us): " + "  ".join(cells), flush=True)
    return failed


def bench_matrix(name: str, A: sp.csr_matrix, repeats: int, sweep: bool = False) -> int:
    """Check then time ``A x`` and ``A^T y``; print one line per variant; return the failed checks."""
    import cupy
    from cupyx.scipy import sparse as cusparse

    rng = np.random.default_rng(0)
    failed = 0
    print(f"\n{name}: {A.shape[0]} x {A.shape[1]}, {A.nnz / 1e6:.2f} M non-zeros", flush=True)
    for label, M in (("J p", A), ("J^T q", sp.csr_matrix(A.T))):
        x = rng.standard_normal(M.shape[1])
        expected = M @ x
        times: dict[str, float] = {}
        for dtype in _DTYPES:
            x_rounded = x.astype(dtype)
            variants: dict[str, tuple[Callable[[], object], np.ndarray]] = {}
            if dtype != np.float16:
                cs, xd = cusparse.csr_matrix(M.astype(dtype)), cupy.asarray(x_rounded)
                variants[f"cusparse {dtype.name}"] = (lambda cs=cs, xd=xd: cs @ xd, expected)
            reference = stored(M, dtype) @ x_rounded.astype(np.float64)
            xd = cupy.asarray(x_rounded)
            for kind, block_size in (("csr", (1, 1)), ("bsr", None)):
                kernel = CudaBlockSparseMatrix(M, dtype, block_size)
                R, C = kernel.block_size
                variants[f"{kind} {dtype.name} ({R}x{C}, lanes {kernel.lanes})"] = (
                    lambda kernel=kernel, xd=xd: kernel.dot(xd), reference)
            # what the solver calls: SparseOperator(J).matvec / .rmatvec
            op = SparseOperator(A, dtype, Backend.CUDA)
            product = op.matvec if label == "J p" else op.rmatvec
            xo = cupy.asarray(x.astype(np.float32 if dtype != np.float64 else np.float64))
            variants[f"operator {dtype.name}"] = (lambda product=product, xo=xo: product(xo), expected)
            for variant, (run, ref) in variants.items():
                error = relative_error(run(), ref)
                kernel_fp16 = variant.startswith(("csr", "bsr")) and dtype == np.float16
                ok = error <= (_TOLERANCE["float32"] if kernel_fp16 else _TOLERANCE[dtype.name])
                failed += not ok
                seconds = cuda_median_s(run, repeats)
                times[variant.split(" (")[0]] = seconds
                bytes_moved = M.nnz * (dtype.itemsize + 4) + M.shape[0] * 4
                print(f"  {label:6s} {variant:34s} {seconds * 1e6:9.1f} us  {bytes_moved / seconds / 1e9:7.0f} GB/s(as CSR)  "
                      f"rel.err {error:.1e}{'' if ok else '  <-- WRONG ANSWER'}", flush=True)
        ratios = {
            "bsr fp16/fp32": ("bsr float16", "bsr float32"),
            "bsr fp16/cusparse fp32": ("bsr float16", "cusparse float32"),
            "bsr fp32/cusparse fp32": ("bsr float32", "cusparse float32"),
            "csr fp16/fp32": ("csr float16", "csr float32"),
            "operator fp16/fp32": ("operator float16", "operator float32"),
            "operator fp16/fp64": ("operator float16", "operator float64"),
            "cusparse fp32/fp64": ("cusparse float32", "cusparse float64"),
        }
        print_ratios(f"{label:6s}", times, ratios)
        if sweep:
            failed += lanes_sweep(label, M, x, repeats)
    return failed


def tiled(A: sp.csr_matrix, nnz: int) -> sp.csr_matrix:
    """``A`` repeated block-diagonally to at least ``nnz`` non-zeros."""
    return sp.block_diag([A] * max(1, -(-nnz // A.nnz)), format="csr")


def main() -> int:
    """Run the benchmark; exit status 1 when any product disagrees with SciPy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnz", type=int, default=40_000_000, help="non-zeros of the tiled Jacobians")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    failed = 0
    for name, make in (("BA window (50 keyframes)", ba_jacobian), ("PGO household 3-D (2,500 poses)", pgo_jacobian)):
        A = make()
        failed += bench_matrix(name, A, args.repeats)
        failed += bench_matrix(f"{name} tiled", tiled(A, args.nnz), args.repeats, sweep=True)
    print(f"\n{failed} product(s) outside their tolerance" if failed else "\nevery product checked before timing")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
