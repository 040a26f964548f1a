"""Sparse matrix-vector products in a chosen storage precision, on CPU or GPU.

:class:`SparseOperator` holds a matrix ``A`` rounded to a storage dtype and computes ``A x`` and
``A^T y``. For float16 storage the inputs are rounded to float16, products accumulate in float32
and the outputs are rounded to float16 again: the semantics of a GPU half-precision SpMV
(cuSPARSE with fp16 data and fp32 compute type). On the CPU this is emulated with float32
arrays holding float16-representable values (SciPy has no half-precision sparse kernels), so
accuracy effects are real and speed effects are not. The fp16 input is first scaled by a power
of two (exactly) so that its largest entry is at most 1, against overflow; the product is
scaled back after its output is rounded.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, array_module, round_to

_F16 = np.dtype(np.float16)


def compute_dtype(storage: np.dtype) -> np.dtype:
    """Arithmetic dtype used for a storage dtype (float16 accumulates in float32)."""
    storage = np.dtype(storage)
    return np.dtype(np.float32) if storage == _F16 else storage


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
        self.xp = array_module(backend)
        A = sp.csr_matrix(matrix, copy=True)
        A.data = round_to(A.data, self.dtype)
        A_t = sp.csr_matrix(A.T)
        if backend is Backend.CUDA:
            from cupyx.scipy import sparse as cusparse  # noqa: PLC0415

            A, A_t = cusparse.csr_matrix(A), cusparse.csr_matrix(A_t)
        self._A, self._A_t = A, A_t
        self.shape: tuple[int, int] = matrix.shape

    def _apply(self, matrix: object, x: object) -> object:
        if self.dtype != _F16:
            return (matrix @ x.astype(self._compute, copy=False)).astype(self.out_dtype, copy=False)
        # Scale the input by a power of two (exact) so its largest entry is in [0.5, 1]: a
        # preconditioned CG direction can exceed the float16 range (65504) long before it is
        # meaningless. The output is rounded to float16 before it is scaled back.
        largest = float(self.xp.max(self.xp.abs(x))) if x.size else 0.0
        scale = 2.0 ** math.ceil(math.log2(largest)) if 0.0 < largest < math.inf else 1.0
        y = round_to(matrix @ round_to(x * (1.0 / scale), self.dtype), self.dtype)
        return (y * scale).astype(self.out_dtype, copy=False)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """``A x`` ``(m,)``."""
        return self._apply(self._A, x)

    def rmatvec(self, y: np.ndarray) -> np.ndarray:
        """``A^T y`` ``(n,)``."""
        return self._apply(self._A_t, y)
