"""Sparse triangular solves on CUDA with the factor's values held natively in float16, float32 or
float64 (CuPy ``RawModule``, compiled by NVRTC on first use): the two solves of the incomplete-
Cholesky preconditioner (:mod:`mp_slam_ros.solvers.linear.ichol`) on a CUDA backend.

``cupyx.scipy.sparse.linalg.spsolve_triangular`` (cuSPARSE) has no float16 solve and redoes its
analysis on every call, so the recipe's fp16 factor could not gain anything there. Here an fp16
solve reads 2-byte values, stores every unknown as a 2-byte float16 (as the CPU emulation rounds
it) and accumulates in float32 (float64 for float64 values), so the CUDA and CPU results agree
to the summation order.

Algorithm: a synchronization-free CSR solve (Liu et al., "A synchronization-free algorithm for
parallel sparse triangular solves", Euro-Par 2016; here by rows, one warp per row). Warps take
rows in dependency order from an atomic counter (rows 0..n-1 for ``L``, n-1..0 for ``U``), so a
warp only ever waits for rows already taken by warps that are running: no deadlock whatever the
block scheduling. Each lane waits on the ``ready`` flags of its off-diagonal columns (volatile
reads, so no stale L1 line), the lanes' products are summed by warp shuffles, lane 0 writes
``x_i = (b_i - sum) / d_i``, fences and raises ``ready[i]``. One launch per solve (plus a memset
of the flags). Level scheduling (one launch per level, levels found once on the host) was the
alternative. Its cost is a launch per level (~5-10 us from CuPy, host side), and the levels are
many: measured on the recipe's factors (drop tolerance 3e-3, AMD by pose blocks, see
``bench/gpu_trisolve.py``) 142 for household 2,500 (n 15,000), 200 for city 10,000, 571 for
sphere2500; IC(0) in the natural (odometry) order, a chain, has 14,000-20,000. Here a level
costs a flag round trip through L2 instead of a launch, and the chain-like case stays usable.
Measured on an H200 (``bench/gpu_trisolve.py``, results/gpu/README.md): 2.3-2.9x faster than
cuSPARSE fp32 on those factors, at 7.4-9.3 us per level, and fp16 values take the same time as
fp32 (0.97-1.04x): the solve is bound by the latency of its levels, not by the bytes it reads.

Watchdog: a lane that spins longer than ``timeout_s`` (``%globaltimer``) or sees another lane's
time-out raises a flag in ``status``, writes its row anyway and leaves; the host reads the flag
(:func:`read_status`) and raises :class:`CudaSolveTimeout` instead of hanging forever.

:class:`CudaTriangularFactor` is the preconditioner's ``z = P^T U^-1 L^-1 P s``: gather and,
for float16, scaling by a power of two (the largest entry of ``s`` into (0.5, 1], as
:mod:`.cuda_spmv` does) and rounding to float16; the two solves; scatter back, scaled back, with
a non-finite flag; an overflowing fp16 solve is retried once with the input scaled down, as the
CPU path does.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.solvers.linear.cuda_spmv import _max_abs

_SOURCE = r"""
#include <cuda_fp16.h>

__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }

// Reads of unknowns written by other warps during this launch: volatile (not served by a stale
// L1 line), widened to the accumulation type
__device__ __forceinline__ float load_fresh(const __half* p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const volatile unsigned short*>(p)));
}
__device__ __forceinline__ float load_fresh(const float* p) { return *reinterpret_cast<const volatile float*>(p); }
__device__ __forceinline__ double load_fresh(const double* p) { return *reinterpret_cast<const volatile double*>(p); }

__device__ __forceinline__ int load_flag(const int* p) { return *reinterpret_cast<const volatile int*>(p); }

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// 2^ceil(log2(m)) for 0 < m < inf, else 1 (the same as cuda_spmv's)
__device__ __forceinline__ float power_of_two_scale(float m) {
    if (!(m > 0.0f) || isinf(m)) return 1.0f;
    int e;
    const float f = frexpf(m, &e);
    return ldexpf(1.0f, f == 0.5f ? e - 1 : e);
}

// status[0]: a watchdog time-out happened; status[1]: a scattered unknown was not finite.
// workspace: [next row to take, ready[0..n-1]], zeroed before each launch.
// Lower (upper == 0): CSR with the diagonal last in each row, rows taken 0..n-1.
// Upper (upper != 0): CSR with the diagonal first in each row, rows taken n-1..0.
template <typename Value, typename Sum>
__device__ __forceinline__ void sync_free_rows(const int n, const int upper, const int* __restrict__ ptr,
                                               const int* __restrict__ idx, const Value* __restrict__ val,
                                               const Value* __restrict__ b, Value* x, int* workspace, int* status,
                                               const unsigned long long timeout_ns) {
    const int lane = threadIdx.x & 31;
    int* next_row = workspace;
    int* ready = workspace + 1;
    for (;;) {
        int taken = 0;
        if (lane == 0) taken = atomicAdd(next_row, 1);
        taken = __shfl_sync(0xffffffffu, taken, 0);
        if (taken >= n) return;
        const int row = upper ? n - 1 - taken : taken;
        const int start = ptr[row], end = ptr[row + 1];
        const int diagonal = upper ? start : end - 1;
        const int first = upper ? start + 1 : start, last = upper ? end : end - 1;
        // 1. wait until every column this lane reads is ready
        bool timed_out = false;
        for (int p = first + lane; p < last && !timed_out; p += 32) {
            const int* flag = ready + idx[p];
            unsigned int spins = 0;
            unsigned long long since = 0;
            while (load_flag(flag) == 0) {
                if ((++spins & 1023u) == 0u) {
                    const unsigned long long now = global_ns();
                    if (since == 0ull) since = now;
                    if (now - since > timeout_ns || load_flag(status) != 0) { timed_out = true; break; }
                }
            }
        }
        if (timed_out) atomicExch(status, 1);
        __threadfence();  // acquire: the unknowns behind the flags seen are visible
        // 2. the row's dot product, summed across the warp
        Sum sum = 0;
        for (int p = first + lane; p < last; p += 32) {
            sum += (Sum)widen(val[p]) * (Sum)load_fresh(x + idx[p]);
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            sum += __shfl_down_sync(0xffffffffu, sum, offset);
        }
        // 3. publish x[row] (also after a time-out: the host raises, dependants need not wait)
        if (lane == 0) {
            store(x + row, ((Sum)widen(b[row]) - sum) / (Sum)widen(val[diagonal]));
            __threadfence();  // release: x[row] is visible before its flag
            *reinterpret_cast<volatile int*>(ready + row) = 1;
        }
    }
}

#define TRISOLVE_KERNEL(NAME, VALUE, SUM)                                                                  \
    extern "C" __global__ void NAME(const int n, const int upper, const int* ptr, const int* idx,          \
                                    const VALUE* val, const VALUE* b, VALUE* x, int* workspace,            \
                                    int* status, const unsigned long long timeout_ns) {                    \
        sync_free_rows<VALUE, SUM>(n, upper, ptr, idx, val, b, x, workspace, status, timeout_ns);           \
    }
TRISOLVE_KERNEL(trisolve_f16, __half, float)
TRISOLVE_KERNEL(trisolve_f32, float, float)
TRISOLVE_KERNEL(trisolve_f64, double, double)

// b[i] = s[perm[i]] in the storage type; with `peak` (float16): times retry / scale(peak) first
template <typename Sum, typename Value>
__device__ __forceinline__ void gather_rows(const int n, const Sum* __restrict__ s, const int* __restrict__ perm,
                                            const float* __restrict__ peak, const float retry,
                                            Value* __restrict__ b) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const Sum v = s[perm[i]];
        store(b + i, peak == nullptr ? v : v * (Sum)(retry / power_of_two_scale(*peak)));
    }
}

// out[perm[i]] = z[i] (times scale(peak) / retry with `peak`); status[1] = 1 when z[i] is not finite
template <typename Value, typename Sum>
__device__ __forceinline__ void scatter_rows(const int n, const Value* __restrict__ z, const int* __restrict__ perm,
                                             const float* __restrict__ peak, const float retry,
                                             Sum* __restrict__ out, int* status) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const Sum v = (Sum)widen(z[i]);
        if (!isfinite(v)) status[1] = 1;
        out[perm[i]] = peak == nullptr ? v : v * (Sum)(power_of_two_scale(*peak) / retry);
    }
}

#define PERMUTE_KERNELS(TAG, VALUE, SUM, PEAK)                                                              \
    extern "C" __global__ void gather_##TAG(const int n, const SUM* s, const int* perm, const float* peak,    \
                                            const float retry, VALUE* b) {                                   \
        gather_rows<SUM, VALUE>(n, s, perm, PEAK, retry, b);                                                 \
    }                                                                                                        \
    extern "C" __global__ void scatter_##TAG(const int n, const VALUE* z, const int* perm, const float* peak, \
                                             const float retry, SUM* out, int* status) {                     \
        scatter_rows<VALUE, SUM>(n, z, perm, PEAK, retry, out, status);                                      \
    }
PERMUTE_KERNELS(f16, __half, float, peak)
PERMUTE_KERNELS(f32, float, float, nullptr)
PERMUTE_KERNELS(f64, double, double, nullptr)
"""

#: Kernel tag and accumulation dtype per storage dtype.
_KERNELS = {np.dtype(name): (tag, np.dtype(out)) for name, tag, out in (
    (np.float16, "f16", np.float32), (np.float32, "f32", np.float32), (np.float64, "f64", np.float64))}
_THREADS_PER_BLOCK = 256
_WARPS_PER_BLOCK = _THREADS_PER_BLOCK // 32
#: Warps launched per multiprocessor (at most; each takes rows until none are left). Half of an
#: H100/H200 SM's 64: the parallelism of a pose-graph factor's solve is limited by its
#: dependencies, and more spinning warps only load the L2 that carries the flags.
_WARPS_PER_SM = 32
#: Watchdog: a wait on one column longer than this is taken for a deadlock (a whole solve of a
#: pose-graph factor takes milliseconds).
DEFAULT_TIMEOUT_S = 10.0


class CudaSolveTimeout(RuntimeError):
    """A triangular solve's watchdog fired: a warp waited longer than its time-out (a bug)."""


@functools.lru_cache(maxsize=1)
def _module() -> object:
    import cupy  # noqa: PLC0415 (optional dependency)

    return cupy.RawModule(code=_SOURCE, options=("--std=c++14",))


@functools.lru_cache(maxsize=8)
def _max_warps(device_id: int) -> int:
    """Warps to launch at most on device ``device_id`` (``_WARPS_PER_SM`` per multiprocessor)."""
    import cupy  # noqa: PLC0415

    return _WARPS_PER_SM * int(cupy.cuda.Device(device_id).attributes["MultiProcessorCount"])


def _zero(array: object) -> None:
    """Zero a contiguous device array on the current stream (one ``cudaMemsetAsync``)."""
    import cupy  # noqa: PLC0415

    if array.nbytes:
        cupy.cuda.runtime.memsetAsync(array.data.ptr, 0, array.nbytes, cupy.cuda.get_current_stream().ptr)


def new_status() -> object:
    """A zeroed ``(2,)`` int32 device array: [watchdog time-out, non-finite unknown] flags."""
    import cupy  # noqa: PLC0415

    return cupy.zeros(2, dtype=np.int32)


def read_status(status: object) -> bool:
    """Whether a status array (:func:`new_status`) flags a non-finite unknown; waits for the
    device, zeroes the flags, raises :class:`CudaSolveTimeout` if the watchdog fired."""
    timed_out, non_finite = (bool(flag) for flag in status.get())
    _zero(status)
    if timed_out:
        raise CudaSolveTimeout("sparse triangular solve: the watchdog fired (a warp waited past its time-out)")
    return non_finite


def _triangular_csr(matrix: sp.spmatrix, lower: bool) -> sp.csr_matrix:
    """``matrix`` as a CSR copy with sorted indices; raises ``ValueError`` unless it is square,
    ``lower``/upper triangular and stores every diagonal entry (last/first in its row)."""
    A = sp.csr_matrix(matrix, copy=True)
    A.sum_duplicates()
    A.sort_indices()
    n = A.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"triangular solve: the matrix must be square, got {A.shape}")
    if A.nnz >= 2**31:
        raise ValueError(f"triangular solve: {A.nnz} non-zeros do not fit int32 indices")
    rows = np.repeat(np.arange(n), np.diff(A.indptr))
    if np.any(A.indices > rows if lower else A.indices < rows):
        raise ValueError(f"triangular solve: the matrix is not {'lower' if lower else 'upper'} triangular")
    if n and (np.any(np.diff(A.indptr) == 0) or not np.array_equal(
            A.indices[A.indptr[1:] - 1 if lower else A.indptr[:-1]], np.arange(n))):
        raise ValueError("triangular solve: every diagonal entry must be stored")
    return A


class CudaTriangularMatrix:
    """An ``(n, n)`` lower (``lower``) or upper triangular matrix on the GPU in CSR with values in
    ``dtype`` (float16, float32 or float64); :meth:`solve` is the sync-free solve (module
    docstring). ``status``: the ``(2,)`` flags array (:func:`new_status`) to report a watchdog
    time-out in (shared by the two matrices of a factor; default: its own); ``timeout_s``: the
    watchdog's limit on one wait."""

    def __init__(
        self, matrix: sp.spmatrix, dtype: np.dtype, lower: bool, status: object = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        import cupy  # noqa: PLC0415

        self.dtype = np.dtype(dtype)
        if self.dtype not in _KERNELS:
            raise ValueError(f"CudaTriangularMatrix: unsupported dtype {self.dtype} (float16, float32 or float64)")
        tag, self.sum_dtype = _KERNELS[self.dtype]
        self._kernel = _module().get_function(f"trisolve_{tag}")
        A = _triangular_csr(matrix, lower)
        self.lower, self.n = lower, A.shape[0]
        self._ptr = cupy.asarray(A.indptr.astype(np.int32))
        self._idx = cupy.asarray(A.indices.astype(np.int32))
        self._val = cupy.asarray(A.data.astype(self.dtype))
        self._workspace = cupy.zeros(self.n + 1, dtype=np.int32)  # [next row, ready flags]
        self.status = new_status() if status is None else status
        self._timeout_ns = np.uint64(timeout_s * 1e9)
        warps = min(self.n, _max_warps(cupy.cuda.Device().id))
        self._grid = (max(1, -(-warps // _WARPS_PER_BLOCK)),)

    def solve(self, b: object, out: object = None) -> object:
        """``x`` ``(n,)`` in :attr:`dtype` with ``A x = b`` (``b`` ``(n,)`` in :attr:`dtype`), into
        ``out`` if given. Asynchronous: a watchdog time-out is reported in :attr:`status`
        (:func:`read_status`, or :meth:`check`)."""
        import cupy  # noqa: PLC0415

        if b.dtype != self.dtype or b.shape != (self.n,):
            raise ValueError(f"CudaTriangularMatrix.solve: b must be ({self.n},) {self.dtype}, got {b.shape} {b.dtype}")
        x = cupy.empty(self.n, dtype=self.dtype) if out is None else out
        if self.n:
            _zero(self._workspace)
            self._kernel(
                self._grid, (_THREADS_PER_BLOCK,),
                (np.int32(self.n), np.int32(not self.lower), self._ptr, self._idx, self._val,
                 cupy.ascontiguousarray(b), x, self._workspace, self.status, self._timeout_ns),
            )
        return x

    def check(self) -> None:
        """Wait for the device; raise :class:`CudaSolveTimeout` if a solve's watchdog fired."""
        read_status(self.status)


class CudaTriangularFactor:
    """``L`` (``lower``, diagonal last in each row) and ``U`` (``upper``, diagonal first; ``L^T``
    for incomplete Cholesky) on the GPU with values in ``dtype``, and the permutation ``perm``
    ``(n,)`` of :mod:`.ichol` (default: none). :meth:`solve` is ``U^-1 L^-1 b``; :meth:`apply`
    the preconditioner ``P^T U^-1 L^-1 P s`` with the CPU emulation's semantics (module
    docstring)."""

    def __init__(
        self, lower: sp.spmatrix, upper: sp.spmatrix, dtype: np.dtype, perm: np.ndarray | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        import cupy  # noqa: PLC0415

        self.dtype = np.dtype(dtype)
        self.status = new_status()
        self.L = CudaTriangularMatrix(lower, self.dtype, True, self.status, timeout_s)
        self.U = CudaTriangularMatrix(upper, self.dtype, False, self.status, timeout_s)
        self.n, self.sum_dtype = self.L.n, self.L.sum_dtype
        if self.U.n != self.n:
            raise ValueError(f"CudaTriangularFactor: L is {self.n} x {self.n} but U is {self.U.n} x {self.U.n}")
        perm = np.arange(self.n) if perm is None else np.asarray(perm)
        if perm.shape != (self.n,):
            raise ValueError(f"CudaTriangularFactor: a permutation of {perm.size} unknowns for {self.n}")
        self._perm = cupy.asarray(perm.astype(np.int32))
        tag = _KERNELS[self.dtype][0]
        self._gather = _module().get_function(f"gather_{tag}")
        self._scatter = _module().get_function(f"scatter_{tag}")
        self._grid = (max(1, -(-self.n // _THREADS_PER_BLOCK)),)

    def solve(self, b: object) -> object:
        """``U^-1 L^-1 b`` ``(n,)`` in :attr:`dtype` (``b`` in :attr:`dtype`; float16: every
        unknown of both solves stored in float16). Asynchronous, like
        :meth:`CudaTriangularMatrix.solve`."""
        return self.U.solve(self.L.solve(b))

    def apply(self, s: object, overflow_retry_scale: float = 2.0**-12) -> object:
        """``z = P^T U^-1 L^-1 P s`` ``(n,)`` in :attr:`sum_dtype` (float32 for float16 values).

        float16: ``P s`` is multiplied by the power of two that brings its largest entry into
        (0.5, 1] and rounded to float16, ``z`` scaled back; when an unknown overflows, the solve
        is redone once with the input also multiplied by ``overflow_retry_scale``, and if it
        overflows again ``z`` is returned non-finite. Waits for the device (the flags); raises
        :class:`CudaSolveTimeout` if the watchdog fired."""
        import cupy  # noqa: PLC0415

        s = cupy.ascontiguousarray(s, dtype=self.sum_dtype)
        if s.shape != (self.n,):
            raise ValueError(f"CudaTriangularFactor.apply: s must be ({self.n},), got {s.shape}")
        half = self.dtype == np.float16
        peak = (_max_abs()(s) if self.n else cupy.zeros((), np.float32)) if half else None
        z = cupy.empty(self.n, dtype=self.sum_dtype)
        b = cupy.empty(self.n, dtype=self.dtype)
        n, threads, retry = np.int32(self.n), (_THREADS_PER_BLOCK,), 1.0
        for _ in range(2 if half else 1):
            common = (self._perm, np.uint64(0) if peak is None else peak, np.float32(retry))
            self._gather(self._grid, threads, (n, s, *common, b))
            self._scatter(self._grid, threads, (n, self.solve(b), *common, z, self.status))
            if not read_status(self.status):
                break
            retry *= overflow_retry_scale
        return z
