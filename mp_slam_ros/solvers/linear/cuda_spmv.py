"""CSR sparse matrix-vector products on CUDA with values and input vector held natively in
float16, float32 or float64 (CuPy ``RawModule``, compiled by NVRTC on first use).

cuSPARSE through ``cupyx.scipy.sparse`` has no float16 CSR product, so before this module the
CUDA path stored fp16-rounded values in float32 and moved the same bytes as fp32: no gain. Here
an fp16 product reads 2-byte values and a 2-byte input vector and accumulates in float32 (as
the CPU emulation in :mod:`mp_slam_ros.solvers.linear.operators` does, so the two agree to the
summation order). ``lanes`` threads (a power of two up to a warp) share a row and reduce with
warp shuffles; :func:`lanes_for` picks it from the mean row length.
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

template <typename Value, typename Sum>
__device__ __forceinline__ void csr_rows(const int rows, const int lanes, const int* __restrict__ indptr,
                                         const int* __restrict__ indices, const Value* __restrict__ data,
                                         const Value* __restrict__ x, Sum* __restrict__ y) {
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const int row = (int)(thread / lanes);
    const int lane = (int)(thread % lanes);
    Sum sum = 0;
    if (row < rows) {
        const int end = indptr[row + 1];
        for (int p = indptr[row] + lane; p < end; p += lanes) {
            sum += (Sum)widen(data[p]) * (Sum)widen(x[indices[p]]);
        }
    }
    for (int offset = lanes >> 1; offset > 0; offset >>= 1) {
        sum += __shfl_down_sync(0xffffffffu, sum, offset, lanes);
    }
    if (row < rows && lane == 0) {
        y[row] = sum;
    }
}

extern "C" __global__ void csr_spmv_f16(const int rows, const int lanes, const int* indptr, const int* indices,
                                        const __half* data, const __half* x, float* y) {
    csr_rows<__half, float>(rows, lanes, indptr, indices, data, x, y);
}
extern "C" __global__ void csr_spmv_f32(const int rows, const int lanes, const int* indptr, const int* indices,
                                        const float* data, const float* x, float* y) {
    csr_rows<float, float>(rows, lanes, indptr, indices, data, x, y);
}
extern "C" __global__ void csr_spmv_f64(const int rows, const int lanes, const int* indptr, const int* indices,
                                        const double* data, const double* x, double* y) {
    csr_rows<double, double>(rows, lanes, indptr, indices, data, x, y);
}
"""

#: Kernel name and accumulation (output) dtype per storage dtype.
_KERNELS = {
    np.dtype(np.float16): ("csr_spmv_f16", np.dtype(np.float32)),
    np.dtype(np.float32): ("csr_spmv_f32", np.dtype(np.float32)),
    np.dtype(np.float64): ("csr_spmv_f64", np.dtype(np.float64)),
}
_THREADS_PER_BLOCK = 256


@functools.lru_cache(maxsize=1)
def _module() -> object:
    import cupy  # noqa: PLC0415 (optional dependency)

    return cupy.RawModule(code=_SOURCE, options=("--std=c++14",))


def lanes_for(mean_row_length: float) -> int:
    """Threads per row: the largest power of two not above the mean row length, in [1, 32]."""
    if not mean_row_length >= 1.0:
        return 1
    return int(min(32, 2 ** math.floor(math.log2(mean_row_length))))


class CudaCsrMatrix:
    """A ``(rows, cols)`` CSR matrix on the GPU whose values are stored in ``dtype`` (float16,
    float32 or float64); :meth:`dot` multiplies a vector of the same dtype and returns the
    product in the accumulation dtype (float32 for float16 storage)."""

    def __init__(self, matrix: sp.csr_matrix, dtype: np.dtype) -> None:
        import cupy  # noqa: PLC0415

        self.dtype = np.dtype(dtype)
        if self.dtype not in _KERNELS:
            raise ValueError(f"CudaCsrMatrix: unsupported dtype {self.dtype} (float16, float32 or float64)")
        name, self.out_dtype = _KERNELS[self.dtype]
        self._kernel = _module().get_function(name)
        A = sp.csr_matrix(matrix)
        self.shape: tuple[int, int] = A.shape
        self._indptr = cupy.asarray(A.indptr.astype(np.int32))
        self._indices = cupy.asarray(A.indices.astype(np.int32))
        self._data = cupy.asarray(A.data.astype(self.dtype))
        self.lanes = lanes_for(A.nnz / max(A.shape[0], 1))
        threads = A.shape[0] * self.lanes
        self._grid = (max(1, -(-threads // _THREADS_PER_BLOCK)),)

    def dot(self, x: object) -> object:
        """``A x`` ``(rows,)`` in :attr:`out_dtype`; ``x`` ``(cols,)`` must already be in :attr:`dtype`."""
        import cupy  # noqa: PLC0415

        if x.dtype != self.dtype or x.shape != (self.shape[1],):
            raise ValueError(f"CudaCsrMatrix.dot: x must be ({self.shape[1]},) {self.dtype}, got {x.shape} {x.dtype}")
        y = cupy.empty(self.shape[0], dtype=self.out_dtype)
        self._kernel(
            self._grid, (_THREADS_PER_BLOCK,),
            (np.int32(self.shape[0]), np.int32(self.lanes), self._indptr, self._indices, self._data,
             cupy.ascontiguousarray(x), y),
        )
        return y
