"""Sparse matrix-vector products in a chosen storage precision, on CPU or GPU.

:class:`SparseOperator` holds a matrix ``A`` rounded to a storage dtype and computes ``A x`` and
``A^T y``. For float16 storage the inputs are rounded to float16, products accumulate in float32
and the outputs are rounded to float16 again: the semantics of a GPU half-precision SpMV
(fp16 data, fp32 compute type). On the CPU this is emulated with float32
arrays holding float16-representable values (there are no half-precision sparse kernels), so
accuracy effects are real and speed effects are not. The fp16 input is first scaled by a power
of two (exactly) so that its largest entry is at most 1, against overflow; the product is
scaled back after its output is rounded.

On the CPU both products are numba kernels on the CSR arrays of ``A`` (``A^T y`` scatters along
the rows, so no transpose is built per matrix; the output rounding is fused into the product);
on CUDA they are this package's block-sparse kernels on ``A`` and on a transposed copy, with
float16 values and inputs held natively (:mod:`mp_slam_ros.solvers.linear.cuda_spmv`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.sparse as sp

from mp_slam_ros.fp16 import round_fp16
from mp_slam_ros.precision import Backend, round_to

_F16 = np.dtype(np.float16)


def compute_dtype(storage: np.dtype) -> np.dtype:
    """Arithmetic dtype used for a storage dtype (float16 accumulates in float32)."""
    storage = np.dtype(storage)
    return np.dtype(np.float32) if storage == _F16 else storage


def unsigned_pattern(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr uint64, indices uint32)`` of a CSR matrix for the numba kernels: with unsigned
    indices numba skips its negative-index wraparound test on every array access."""
    return matrix.indptr.astype(np.uint64), matrix.indices.astype(np.uint32)


@numba.njit(cache=True, nogil=True)
def _matvec(indptr, indices, data, x, round16, scale):  # type: ignore[no-untyped-def]
    """``A x`` (CSR gather, accumulated in the dtype of ``data``); with ``round16`` each entry is
    rounded to float16, then multiplied by ``scale``. Indices as :func:`unsigned_pattern`."""
    one = numba.uint64(1)
    y = np.empty(indptr.size - 1, dtype=data.dtype)
    for i in range(numba.uint64(y.size)):
        acc = data.dtype.type(0.0)
        for p in range(indptr[i], indptr[i + one]):
            acc += data[p] * x[indices[p]]
        y[i] = round_fp16(acc) * scale if round16 else acc
    return y


@numba.njit(cache=True, nogil=True)
def _rmatvec(indptr, indices, data, y, num_columns, round16, scale):  # type: ignore[no-untyped-def]
    """``A^T y`` from the CSR arrays of ``A`` (row scatter; rounding as in :func:`_matvec`)."""
    one = numba.uint64(1)
    out = np.zeros(num_columns, dtype=data.dtype)
    for i in range(numba.uint64(y.size)):
        y_i = y[i]
        for p in range(indptr[i], indptr[i + one]):
            out[indices[p]] += data[p] * y_i
    if round16:
        for j in range(numba.uint64(num_columns)):
            out[j] = round_fp16(out[j]) * scale
    return out


class SparseOperator:
    """``A`` ``(m, n)`` stored in ``dtype`` with products ``A x`` and ``A^T y``.

    Inputs may be in any float dtype; outputs are in ``out_dtype`` (default: the compute dtype).
    """

    def __init__(
        self,
        matrix: sp.spmatrix,
        dtype: np.dtype,
        backend: Backend = Backend.CPU,
        out_dtype: np.dtype | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self._compute = compute_dtype(self.dtype)
        self.out_dtype = np.dtype(out_dtype) if out_dtype is not None else self._compute
        self.shape: tuple[int, int] = matrix.shape
        A = sp.csr_matrix(matrix)
        if not A.has_canonical_format:
            A = A.copy()
            A.sum_duplicates()
        data = round_to(A.data, self.dtype).astype(self._compute, copy=False)
        self._cuda = backend is Backend.CUDA
        if self._cuda:
            from mp_slam_ros.solvers.linear.cuda_spmv import CudaProducts  # noqa: PLC0415

            self._device = CudaProducts(sp.csr_matrix((data, A.indices, A.indptr), shape=A.shape), self.dtype)
        else:
            self._arrays = (*unsigned_pattern(A), data)

    def _input(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """(CPU) ``x`` in the compute dtype; for float16 storage scaled by a power of two (exact) so its
        largest entry is in [0.5, 1] and rounded to float16, with the factor to undo the scaling:
        a preconditioned CG direction can exceed the float16 range (65504) long before it is
        meaningless."""
        if self.dtype != _F16:
            return x.astype(self._compute, copy=False), 1.0
        largest = float(np.max(np.abs(x))) if x.size else 0.0
        scale = 2.0 ** math.ceil(math.log2(largest)) if 0.0 < largest < math.inf else 1.0
        return round_to(x * (1.0 / scale), self.dtype), scale

    def _output(self, y: object) -> object:
        return y.astype(self.out_dtype, copy=False)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` ``(m,)``."""
        if self._cuda:
            return self._output(self._device.matvec(x))
        x_in, scale = self._input(x)
        return self._output(_matvec(*self._arrays, x_in, self.dtype == _F16, self._compute.type(scale)))

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """``A^T y`` ``(n,)``."""
        if self._cuda:
            return self._output(self._device.rmatvec(y))
        y_in, scale = self._input(y)
        return self._output(
            _rmatvec(*self._arrays, y_in, self.shape[1], self.dtype == _F16, self._compute.type(scale))
        )
