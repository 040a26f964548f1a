#!/usr/bin/env bash
# GPU check of mp_slam_ros (issue 9, item 6): does the CUDA path work on this machine, and what
# does it gain? Run from anywhere on a machine with an NVIDIA GPU:
#
#   ./bench/gpu_check.sh            # about 5 minutes; prints one verdict line per step
#   GPU_CHECK_SKIP='products' ./bench/gpu_check.sh   # skip the steps whose name matches
#
# Steps (each with its own timeout; a failed step is reported and the next still runs):
#   0. the project's venv (.venv; scripts/setup.sh creates it if missing: not counted below), or
#      MP_SLAM_PYTHON=python3 to use a machine's own Python with NumPy, SciPy, numba and CuPy
#      (e.g. a GPU image with no registry access) plus MP_SLAM_WHEELS=DIR: wheels of what that
#      Python lacks (cvxopt), installed offline into .gpu-site/ and put on PYTHONPATH;
#   1. nvidia-smi sees a GPU (else: exit 1, nothing else makes sense);
#   2. CuPy in the venv: pip-installs cupy-cuda13x or cupy-cuda12x (after the driver's CUDA
#      major version) when `import cupy` fails;
#   3. the backend self-test (mp_slam_ros.precision.cuda_self_test: the package's own CUDA
#      products, incomplete-Cholesky solves and CGNR against the CPU; backend=cuda is refused
#      where it fails) and what Backend.AUTO picks (the CPU, by design);
#   4. the fp16 products on their own (bench/gpu_spmv.py): J p and J^T q of BA and PGO Jacobians,
#      cuSPARSE fp64/fp32 against the package's native fp16 kernel, answers checked first;
#   4b. the fp16 incomplete-Cholesky triangular solves (bench/gpu_trisolve.py, under 90 s): IC
#      factors of household 2,500, city 10,000 and sphere2500 poses, cuSPARSE fp32 against the
#      package's sync-free kernel in fp64/fp32/fp16, answers checked first, a watchdog per wait;
#   5. the CUDA tests: pytest -m gpu (test_gpu_paths.py, test_ichol.py) and test_ba.py's CUDA test;
#   6. timings, CPU vs CUDA, fp64 / fp32 / mixed: PGO (household 2,500 and 20,000 poses, city 10,000; the
#      iterative cgnr_ic path forced, as the recipe solves them) and BA (two 50-keyframe windows,
#      cgnr and the default solver); one timed run after a warm-up, chi2/cost of the CUDA answer
#      vs the CPU one checked before the times are compared, the linear solvers that ran named;
#      lines are printed as they come, so a timeout still leaves the finished ones.
# Exit status: 0 when every step passed, 1 otherwise. Budget: under 8 minutes after setup (measured on an H200: 104 s without the products step, 155 s for
# the products step and the BA CUDA test alone, results/gpu/h200_run4.log and run5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${MP_SLAM_PYTHON:-$ROOT/.venv/bin/python}"
FAILED=()
START=$SECONDS

say() { printf '[gpu_check %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() {
  printf '[gpu_check] ERROR: %s\n' "$*" >&2
  exit 1
}
# step NAME SECONDS CMD...: run CMD with a timeout; record a failure (or a timeout) and go on.
# GPU_CHECK_SKIP=REGEX skips the steps whose name matches (e.g. 'products|BA CUDA' on a short lease).
step() {
  local name="$1" limit="$2"
  shift 2
  if [ -n "${GPU_CHECK_SKIP:-}" ] && [[ "$name" =~ $GPU_CHECK_SKIP ]]; then
    say "== $name: skipped (GPU_CHECK_SKIP)"
    return 0
  fi
  say "== $name (timeout ${limit}s)"
  local status=0
  timeout --kill-after=10 "$limit" "$@" || status=$?
  if [ "$status" -eq 0 ]; then
    say "   $name: ok"
  elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    say "   $name: TIMED OUT after ${limit}s"
    FAILED+=("$name (timeout)")
  else
    say "   $name: FAILED (exit $status)"
    FAILED+=("$name")
  fi
}

# --- 0. venv ----------------------------------------------------------------------------------
if [ -z "${MP_SLAM_PYTHON:-}" ] && [ ! -x "$PY" ]; then
  say "no .venv: running scripts/setup.sh first (a few minutes on a fresh machine)"
  ./scripts/setup.sh || die "scripts/setup.sh failed; fix the setup before the GPU check"
fi
SITE=""
if [ -n "${MP_SLAM_WHEELS:-}" ]; then
  SITE="$ROOT/.gpu-site"
  "$PY" -m pip install --quiet --no-index --no-deps --upgrade --target "$SITE" "$MP_SLAM_WHEELS"/*.whl ||
    die "offline install of $MP_SLAM_WHEELS/*.whl into $SITE failed"
fi
export OPENBLAS_NUM_THREADS=1 PYTHONPATH="$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
say "Python: $("$PY" -c 'import sys, numpy, scipy, numba; print(sys.version.split()[0], "numpy", numpy.__version__, "scipy", scipy.__version__, "numba", numba.__version__)')"

# --- 1. a GPU ---------------------------------------------------------------------------------
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver on this machine"
GPU="$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)" ||
  die "nvidia-smi failed: the driver sees no GPU"
CUDA_MAJOR="$(timeout 30 nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)"
say "GPU: $GPU; driver CUDA version ${CUDA_MAJOR:-unknown}"

# --- 2. CuPy ----------------------------------------------------------------------------------
if ! "$PY" -c "import cupy" 2>/dev/null; then
  if [ "${CUDA_MAJOR:-12}" -ge 13 ]; then CANDIDATES=(cupy-cuda13x cupy-cuda12x); else CANDIDATES=(cupy-cuda12x); fi
  for package in "${CANDIDATES[@]}"; do
    say "CuPy missing: pip install $package"
    if timeout 300 "$PY" -m pip install --quiet "$package"; then break; fi
    say "   pip install $package failed"
  done
  "$PY" -c "import cupy" || die "CuPy could not be installed (tried: ${CANDIDATES[*]}); install a cupy-cudaXXx wheel matching the driver"
fi
"$PY" - <<'EOF' || die "CuPy imports but cannot use the GPU (driver/toolkit mismatch?)"
import cupy
print(f"[gpu_check] CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
      f"{cupy.cuda.runtime.getDeviceCount()} device(s)")
assert float((cupy.arange(10.0) ** 2).sum()) == 285.0
EOF

# --- 3. the backend self-test -----------------------------------------------------------------
step "backend self-test" 180 "$PY" - <<'EOF'
from mp_slam_ros.precision import cuda_self_test, select_backend
reason = cuda_self_test()
print(f"[gpu_check] self-test: {'passed' if reason is None else 'FAILED: ' + reason}; "
      f"Backend.AUTO -> {select_backend('auto').value} (the CPU by design: select_backend's docstring)")
raise SystemExit(0 if reason is None else 1)
EOF

# --- 4. the fp16 products ---------------------------------------------------------------------
step "fp16 products (bench/gpu_spmv.py)" 240 "$PY" bench/gpu_spmv.py

# --- 4b. the fp16 triangular solves -----------------------------------------------------------
step "fp16 IC triangular solves (bench/gpu_trisolve.py)" 120 "$PY" bench/gpu_trisolve.py

# --- 5. the CUDA tests ------------------------------------------------------------------------
step "CUDA tests (pytest -m gpu)" 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu \
  test/unit/test_gpu_paths.py test/unit/test_ichol.py
step "BA CUDA test (test_ba.py -k cuda)" 120 "$PY" -m pytest -q -p no:cacheprovider test/unit/test_ba.py -k cuda

# --- 6. timings -------------------------------------------------------------------------------
step "timings CPU vs CUDA" 300 "$PY" - <<'EOF'
import time
from dataclasses import replace

from mp_slam_ros.precision import Backend
from mp_slam_ros.sim.ba_windows import generate_window
from mp_slam_ros.sim.pose_graphs import city_graph, household_graph
from mp_slam_ros.solvers.ba import ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.pgo import default_options, optimize_pose_graph

MODES = ("fp64", "fp32", "mixed")


def timed(run, repeats=1):
    run()  # warm-up: numba / CUDA kernel compilation, cuSPARSE handles
    results = [None] * repeats
    for index in range(repeats):
        started = time.perf_counter()
        value = run()
        results[index] = (time.perf_counter() - started, value)
    return min(results, key=lambda item: item[0])


def report(name, mode, cpu, gpu):
    (cpu_s, (cpu_cost, _)), (gpu_s, (gpu_cost, summary)) = cpu, gpu
    gap = abs(gpu_cost - cpu_cost) / max(abs(cpu_cost), 1e-300)
    flag = "" if gap <= 1e-3 else "  <-- CUDA answer differs from the CPU one"
    print(f"{name:24s} {mode:6s} cpu {cpu_s:8.3f} s  cuda {gpu_s:8.3f} s  cuda/cpu {gpu_s / cpu_s:6.2f}  "
          f"cost gap {gap:.1e}  cuda: {summary.backend.value} {'+'.join(summary.linear_solvers_used)} "
          f"{summary.num_iterations} its {summary.termination.value}, linear solves "
          f"{summary.timings.linear_solve_s:.3f} s of {summary.timings.total_s:.3f}{flag}", flush=True)
    return gpu_s, gap


def iterative(options):
    """The recipe's path: cgnr_ic even where the direct solver would be picked for the size."""
    return replace(options, linear=replace(options.linear, direct_max_parameters=0))


bad = 0
print(f"{'problem':24s} {'mode':6s}   times (after a warm-up; on CUDA the fp16 products and IC triangular solves run natively in fp16)")
graphs = {"household3d-2500": household_graph(2500, dim=3, seed=0, initial="perturbed").graph,
          "city2d-10000": city_graph(10000, seed=0).graph,
          "household3d-20000": household_graph(20000, dim=3, seed=0, initial="perturbed").graph}
for name, graph in graphs.items():
    cuda_times = {}
    for mode in MODES:
        runs = [timed(lambda backend=backend: (lambda result: (result.final_chi2, result.summary))(optimize_pose_graph(
            graph, iterative(default_options(precision=mode, backend=backend))))) for backend in (Backend.CPU, Backend.CUDA)]
        cuda_times[mode], gap = report(f"pgo {name}", mode, *runs)
        bad += gap > 1e-3
    print(f"{'':24s} cuda mixed/fp64 {cuda_times['mixed'] / cuda_times['fp64']:.2f}  "
          f"mixed/fp32 {cuda_times['mixed'] / cuda_times['fp32']:.2f}", flush=True)
windows = [generate_window(50, 100 + index) for index in range(2)]
for solver in ("cgnr", None):
    label = solver or "default"
    for mode in MODES:
        runs = []
        for backend in (Backend.CPU, Backend.CUDA):
            kwargs = {} if solver is None else {"solver": solver}
            def run(backend=backend):
                summaries = [bundle_adjust(w.problem, ba_solver_options(mode, backend=backend), **kwargs).summary
                             for w in windows]
                return sum(summary.final_cost for summary in summaries), summaries[0]

            runs.append(timed(run))
        bad += report(f"ba 50kf x2 {label}", mode, *runs)[1] > 1e-3
raise SystemExit(1 if bad else 0)
EOF

# --- verdict ----------------------------------------------------------------------------------
say "done in $((SECONDS - START)) s"
if [ "${#FAILED[@]}" -gt 0 ]; then
  printf '[gpu_check] FAILED steps: %s\n' "${FAILED[*]}" >&2
  exit 1
fi
say "every step passed"
