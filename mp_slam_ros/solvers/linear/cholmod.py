"""CHOLMOD from whichever binding is installed: one place that knows them all.

* ``cvxopt`` (a wheel on PyPI with SuiteSparse and OpenBLAS inside: the default, no system
  packages needed): AMD ordering, a symbolic analysis kept for the problem and a supernodal
  numeric refactorization per solve (measured on the normal matrix of a 1,600-pose 3-D graph:
  8.7 ms per refactorization against 37 ms for the sksparse-minimal wheel, whose every
  factorization redoes the analysis with reference BLAS);
* ``scikit-sparse`` (optional, built against the system SuiteSparse headers by
  ``scripts/setup.sh`` when they exist): the same through ``analyze_AAt``/``cholesky_AAt``.

:func:`binding` names the one in use (``""`` when none is installed: callers fall back to
SciPy); :func:`fill_reducing_permutation` and :class:`NormalEquationsFactor` are what the
direct solver and the incomplete-Cholesky ordering need. (CHOLMOD's supernodal module and
cvxopt are GPL-licensed: see the README's section on dependencies.)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.solvers.linear.normal_equations import NormalPattern

try:
    import cvxopt
    from cvxopt import amd as _cvxopt_amd
    from cvxopt import cholmod as _cvxopt_cholmod
except ImportError:  # a requirement of the package; absent only in unusual environments
    cvxopt = None
try:
    from sksparse import cholmod as _scikit
except ImportError:  # optional, needs the SuiteSparse headers to build
    _scikit = None

#: Exceptions a failed numeric factorization raises (not positive definite, singular).
FACTOR_ERRORS: tuple[type[Exception], ...] = (ArithmeticError, RuntimeError, ValueError) + (
    (_scikit.CholmodError,) if _scikit is not None else ()
)


def binding() -> str:
    """``"cvxopt"``, ``"scikit-sparse"`` or ``""`` (neither installed)."""
    if cvxopt is not None:
        return "cvxopt"
    return "scikit-sparse" if _scikit is not None else ""


def _require_binding() -> str:
    name = binding()
    if not name:
        raise RuntimeError("no CHOLMOD binding installed (cvxopt or scikit-sparse)")
    return name


def _cvxopt_pattern(col_ptr: np.ndarray, row_idx: np.ndarray, shape: tuple[int, int]) -> object:
    """A cvxopt ``spmatrix`` with the CSC pattern ``(col_ptr, row_idx)``, every value 1 (what a
    symbolic analysis or an ordering needs; a scalar value list builds it ~2x faster)."""
    columns = np.repeat(np.arange(shape[1], dtype=np.int64), np.diff(col_ptr))
    return cvxopt.spmatrix(1.0, cvxopt.matrix(np.asarray(row_idx, dtype=np.int64)), cvxopt.matrix(columns), shape)


def fill_reducing_permutation(pattern: sp.spmatrix) -> np.ndarray:
    """An AMD permutation ``(n,)`` of a symmetric sparsity ``pattern`` (symbolic only).

    Raises RuntimeError when no binding is installed (see :func:`binding`).
    """
    name = _require_binding()
    csc = sp.csc_matrix(pattern, dtype=np.float64)
    if name == "scikit-sparse":
        return np.asarray(_scikit.analyze(csc, ordering_method="amd").P())
    lower = sp.csc_matrix(sp.tril(csc, format="csc") + sp.eye(csc.shape[0], format="csc"))
    lower.sort_indices()
    pattern = _cvxopt_pattern(lower.indptr, lower.indices, lower.shape)
    return np.asarray(_cvxopt_amd.order(pattern, uplo="L"), dtype=np.int64).ravel()


class NormalEquationsFactor:
    """Solves ``(J^T J + beta I) y = g`` for Jacobians with the pattern of ``J``.

    The lower triangle of the normal matrix is assembled on a pattern fixed at construction
    (:class:`NormalPattern`: ``pattern`` when it is ``J``'s, e.g. the one a preconditioner check
    built, else a new one), analysed once and refactored numerically in every :meth:`solve`.
    """

    def __init__(self, J: sp.csr_matrix, pattern: NormalPattern | None = None) -> None:
        self.binding = _require_binding()
        self._pattern = pattern if pattern is not None and pattern.matches(J) else NormalPattern(J)
        self._cvxopt_matrix: object = None
        if self.binding == "cvxopt":
            self._cvxopt_matrix = _cvxopt_pattern(self._pattern.col_ptr, self._pattern.row_idx, self._pattern.shape)
            self._symbolic = _cvxopt_cholmod.symbolic(self._cvxopt_matrix, uplo="L")
        else:
            self._symbolic = _scikit.analyze_AAt(sp.csc_matrix(J.T))

    def matches(self, J: sp.csr_matrix) -> bool:
        """True when ``J`` has the pattern this factor was analysed for."""
        return self._pattern.matches(J)

    def solve(self, J: sp.csr_matrix, beta: float, gradient: np.ndarray) -> np.ndarray:
        """``(J^T J + beta I)^-1 gradient`` (float64); raises one of :data:`FACTOR_ERRORS`."""
        rhs = np.asarray(gradient, dtype=np.float64)
        if self.binding == "cvxopt":
            matrix = self._cvxopt_matrix
            matrix.V = cvxopt.matrix(self._pattern.values(J, beta))  # type: ignore[attr-defined]
            _cvxopt_cholmod.numeric(matrix, self._symbolic)
            solution = cvxopt.matrix(rhs.copy())
            _cvxopt_cholmod.solve(self._symbolic, solution)
            return np.asarray(solution, dtype=np.float64).reshape(-1)
        self._symbolic.cholesky_AAt_inplace(sp.csc_matrix(J.T), beta=beta)  # type: ignore[attr-defined]
        return np.asarray(self._symbolic(rhs)).reshape(-1)  # type: ignore[operator]
