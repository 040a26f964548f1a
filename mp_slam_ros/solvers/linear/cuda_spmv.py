"""Sparse matrix-vector products on CUDA with values and input vector held natively in float16,
float32 or float64 (CuPy ``RawModule``, compiled by NVRTC on first use).

cuSPARSE through ``cupyx.scipy.sparse`` has no float16 product, so before this module the CUDA
path stored fp16-rounded values in float32 and moved the same bytes as fp32: no gain. Here an
fp16 product reads 2-byte values and a 2-byte input vector and accumulates in float32 (as the
CPU emulation in :mod:`mp_slam_ros.solvers.linear.operators` does, so the two agree to the
summation order).

Storage is block sparse row (BSR) with dense ``R x C`` blocks; CSR is the ``1 x 1`` case. The
Jacobians of BA and PGO are made of dense blocks (a reprojection's rows against a camera's or a
point's parameters, 6 x 6 / 3 x 3 for a 3-D / 2-D relative pose), so one 4-byte column index
serves ``R C`` values instead of one: with fp16 values the bytes per non-zero fall from 8
(fp32 CSR) to ``2 + 4 / (R C)`` (BA: 1 x 3 blocks, 3.3 bytes). :func:`block_size_for` picks
the largest block that the matrix fills. ``lanes`` threads (a power of two up to a warp) share
a row and reduce with warp shuffles (:func:`lanes_for`).

The fp16 path fuses what the solver does around each product (:class:`CudaProducts`): the input
is scaled by a power of two so its largest entry is in (0.5, 1] and rounded to float16, and the
float32 sum is rounded to float16 and scaled back, all on the device (no host round trip for
the scale).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.sparse as sp

_SOURCE = r"""
#include <cuda_fp16.h>

__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }

// 2^ceil(log2(m)) for 0 < m < inf, else 1 (exact: frexp, no log rounding)
__device__ __forceinline__ float power_of_two_scale(float m) {
    if (!(m > 0.0f) || isinf(m)) return 1.0f;
    int e;
    const float f = frexpf(m, &e);  // m = f 2^e, f in [0.5, 1)
    return ldexpf(1.0f, f == 0.5f ? e - 1 : e);
}

// y = A x for a BSR matrix of R x C blocks with `rows` scalar rows; `lanes` threads per row.
// With `peak` (float16 only): y = fp16(sum) * scale(peak), the undoing of the input scaling.
template <typename Value, typename Sum>
__device__ __forceinline__ void bsr_rows(const int rows, const int lanes, const int R, const int C,
                                         const int* __restrict__ block_ptr, const int* __restrict__ block_col,
                                         const Value* __restrict__ data, const Value* __restrict__ x,
                                         Sum* __restrict__ y, const float* __restrict__ peak) {
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int row = (int)(thread / lanes);
    const int lane = (int)(thread % lanes);
    Sum sum = 0;
    if (row < rows) {
        const int block_row = row / R;
        const int i = row - block_row * R;
        const int end = block_ptr[block_row + 1];
        for (int b = block_ptr[block_row] + lane; b < end; b += lanes) {
            const Value* v = data + ((long long)b * R + i) * C;
            const Value* xv = x + (long long)block_col[b] * C;
            for (int j = 0; j < C; ++j) {
                sum += (Sum)widen(v[j]) * (Sum)widen(xv[j]);
            }
        }
    }
    for (int offset = lanes >> 1; offset > 0; offset >>= 1) {
        sum += __shfl_down_sync(0xffffffffu, sum, offset, lanes);
    }
    if (row < rows && lane == 0) {
        y[row] = peak == nullptr ? sum : (Sum)(__half2float(__float2half_rn((float)sum)) * power_of_two_scale(*peak));
    }
}

#define BSR_KERNEL(NAME, VALUE, SUM, PEAK)                                                                  \
    extern "C" __global__ void NAME(const int rows, const int lanes, const int R, const int C,              \
                                    const int* block_ptr, const int* block_col, const VALUE* data,           \
                                    const VALUE* x, SUM* y, const float* peak) {                             \
        bsr_rows<VALUE, SUM>(rows, lanes, R, C, block_ptr, block_col, data, x, y, PEAK);                    \
    }
BSR_KERNEL(bsr_spmv_f16, __half, float, peak)
BSR_KERNEL(bsr_spmv_f32, float, float, nullptr)
BSR_KERNEL(bsr_spmv_f64, double, double, nullptr)

// h = fp16(x / scale(peak)): the input of an fp16 product, scaled by an exact power of two
extern "C" __global__ void scale_to_half(const long long n, const float* __restrict__ x, const float* __restrict__ peak,
                                         __half* __restrict__ h) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        h[i] = __float2half_rn(x[i] / power_of_two_scale(*peak));
    }
}
"""

#: Kernel name and accumulation (output) dtype per storage dtype.
_KERNELS = {np.dtype(name): (f"bsr_spmv_{tag}", np.dtype(out)) for name, tag, out in (
    (np.float16, "f16", np.float32), (np.float32, "f32", np.float32), (np.float64, "f64", np.float64))}
_THREADS_PER_BLOCK = 256
#: Candidate block sizes, largest first, then CSR. A PGO Jacobian is made of 6 x 6 (3-D) or
#: 3 x 3 (2-D) blocks; a BA one has a variable number of rows per observation (2 or 3) but its
#: columns come in aligned triples (a camera's 6, a point's 3): 1 x 3 blocks, 3 x 1 for J^T.
_BLOCK_SIZES = ((6, 6), (3, 3), (2, 3), (3, 2), (1, 3), (3, 1), (1, 1))
#: A block size is used when its blocks store at most this many values per non-zero.
_MAX_FILL = 1.1


@functools.lru_cache(maxsize=1)
def _module() -> object:
    import cupy  # noqa: PLC0415 (optional dependency)

    return cupy.RawModule(code=_SOURCE, options=("--std=c++14",))


@functools.lru_cache(maxsize=1)
def _max_abs() -> object:
    """``max |x|`` in one reduction kernel (no temporary ``|x|``)."""
    import cupy  # noqa: PLC0415

    return cupy.ReductionKernel("T x", "T peak", "abs(x)", "max(a, b)", "peak = a", "0", "mp_slam_max_abs")


def lanes_for(median_blocks_per_row: float) -> int:
    """Threads per row: the largest power of two not above a quarter of the median number of
    blocks per row, in [1, 32]. Measured on an H200 (``bench/gpu_spmv.py``, 40 M non-zeros,
    1 to 32 threads swept): one thread per row was fastest for J of BA (1 x 3 blocks, 3 per row)
    and of PGO (6 x 6, 2 per row); 4 to 8 for J^T of BA (3 x 1, median 33 per row)."""
    quarter = median_blocks_per_row / 4.0
    if not quarter >= 1.0:
        return 1
    return int(min(32, 2 ** math.floor(math.log2(quarter))))


def block_size_for(matrix: sp.csr_matrix) -> tuple[int, int]:
    """The largest block size of ``_BLOCK_SIZES`` that divides the shape of ``matrix`` and whose
    blocks hold at most ``_MAX_FILL`` stored values per non-zero; ``(1, 1)`` (CSR) otherwise."""
    return _blocked(matrix, None)[0]


def _blocked(matrix: sp.csr_matrix, block_size: tuple[int, int] | None) -> tuple[tuple[int, int], sp.spmatrix]:
    """``(block size, matrix in BSR with it)`` (CSR for ``(1, 1)``); ``None``: the block size of
    :func:`block_size_for`, each candidate converted once and the chosen conversion kept."""
    if block_size is not None:
        return block_size, matrix if block_size == (1, 1) else matrix.tobsr(blocksize=block_size)
    rows, cols = matrix.shape
    for R, C in _BLOCK_SIZES[:-1]:
        if rows % R == 0 and cols % C == 0 and matrix.nnz:
            blocks = matrix.tobsr(blocksize=(R, C))
            if blocks.data.size <= _MAX_FILL * matrix.nnz:
                return (R, C), blocks
    return (1, 1), matrix


class CudaBlockSparseMatrix:
    """A ``(rows, cols)`` matrix on the GPU in BSR with ``block_size`` blocks (``(1, 1)``: CSR;
    ``None``: :func:`block_size_for`) whose values are stored in ``dtype`` (float16, float32 or
    float64); :meth:`dot` multiplies a vector of the same dtype and returns the product in the
    accumulation dtype (float32 for float16 storage). ``lanes`` forces the threads per row
    (default: :func:`lanes_for`)."""

    def __init__(
        self, matrix: sp.spmatrix, dtype: np.dtype, block_size: tuple[int, int] | None = None, lanes: int | None = None
    ) -> None:
        import cupy  # noqa: PLC0415

        self.dtype = np.dtype(dtype)
        if self.dtype not in _KERNELS:
            raise ValueError(f"CudaBlockSparseMatrix: unsupported dtype {self.dtype} (float16, float32 or float64)")
        name, self.out_dtype = _KERNELS[self.dtype]
        self._kernel = _module().get_function(name)
        A = sp.csr_matrix(matrix)
        self.shape: tuple[int, int] = A.shape
        self.block_size, blocks = _blocked(A, block_size)
        block_ptr, block_col, data = blocks.indptr, blocks.indices, blocks.data.reshape(-1)
        self._block_ptr = cupy.asarray(block_ptr.astype(np.int32))
        self._block_col = cupy.asarray(block_col.astype(np.int32))
        self._data = cupy.asarray(data.astype(self.dtype))
        self.lanes = lanes or lanes_for(float(np.median(np.diff(block_ptr))) if block_ptr.size > 1 else 0.0)
        self._grid = (max(1, -(-A.shape[0] * self.lanes // _THREADS_PER_BLOCK)),)

    def dot(self, x: object, peak: object = None) -> object:
        """``A x`` ``(rows,)`` in :attr:`out_dtype`; ``x`` ``(cols,)`` must already be in :attr:`dtype`.
        ``peak`` (float16 storage only: a float32 device scalar): round the sum to float16 and
        multiply it by the power-of-two scale of ``peak`` (see :class:`CudaProducts`)."""
        import cupy  # noqa: PLC0415

        if x.dtype != self.dtype or x.shape != (self.shape[1],):
            raise ValueError(f"CudaBlockSparseMatrix.dot: x must be ({self.shape[1]},) {self.dtype}, got {x.shape} {x.dtype}")
        y = cupy.empty(self.shape[0], dtype=self.out_dtype)
        R, C = self.block_size
        self._kernel(
            self._grid, (_THREADS_PER_BLOCK,),
            (np.int32(self.shape[0]), np.int32(self.lanes), np.int32(R), np.int32(C), self._block_ptr,
             self._block_col, self._data, cupy.ascontiguousarray(x), y, np.uint64(0) if peak is None else peak),
        )
        return y


class CudaProducts:
    """``A x`` and ``A^T y`` with ``A`` stored in ``dtype`` on the GPU, as the solver needs them.
    float16: the float32 input scaled by a power of two so its largest entry is in (0.5, 1],
    rounded to float16, multiplied with float32 sums, rounded to float16 and scaled back (the
    CPU emulation's semantics), all on the device; float32/float64: the plain products."""

    def __init__(self, matrix: sp.csr_matrix, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        # A^T y from a transposed copy: scattering A's rows with atomic adds measured 1.6-2.7x
        # slower on an H200 (BA, 40 M non-zeros)
        self.A = CudaBlockSparseMatrix(matrix, self.dtype)
        self.A_t = CudaBlockSparseMatrix(sp.csr_matrix(matrix.T), self.dtype)
        self._scale_to_half = _module().get_function("scale_to_half")

    def _input(self, x: object) -> tuple[object, object]:
        """``x`` in the storage dtype; float16: scaled into (0.5, 1] first, with the peak |x|."""
        import cupy  # noqa: PLC0415

        if self.dtype != np.float16:
            return cupy.ascontiguousarray(x, dtype=self.dtype), None
        x32 = cupy.ascontiguousarray(x, dtype=np.float32)
        peak = _max_abs()(x32) if x32.size else cupy.zeros((), np.float32)
        half = cupy.empty(x32.size, dtype=np.float16)
        grid = (max(1, -(-x32.size // _THREADS_PER_BLOCK)),)
        self._scale_to_half(grid, (_THREADS_PER_BLOCK,), (np.int64(x32.size), x32, peak, half))
        return half, peak

    def matvec(self, x: object) -> object:
        """``A x`` ``(m,)`` in the accumulation dtype."""
        return self.A.dot(*self._input(x))

    def rmatvec(self, y: object) -> object:
        """``A^T y`` ``(n,)`` in the accumulation dtype."""
        return self.A_t.dot(*self._input(y))
