"""CHOLMOD from whichever binding is installed: one place that knows both.

* ``sksparse-minimal`` (a wheel on PyPI with SuiteSparse inside: the default, no system
  packages needed): factors a symmetric matrix (its lower triangle is read; analysis and numeric
  factorization together) and solves with it; its ``P()`` is CHOLMOD's fill-reducing ordering.
* ``scikit-sparse`` (optional, built against the system SuiteSparse headers by
  ``scripts/setup.sh`` when they exist): the same, plus a symbolic analysis that is reused by
  every numeric refactorization (``analyze_AAt`` / ``cholesky_AAt_inplace``), a little faster.

:func:`binding` names the one in use (``""`` when neither is installed: callers fall back to
SciPy); :func:`fill_reducing_permutation` and :class:`NormalEquationsFactor` are what the
direct solver and the incomplete-Cholesky ordering need.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

try:
    from sksparse import cholmod as _scikit
except ImportError:  # optional, needs the SuiteSparse headers to build
    _scikit = None
try:
    from sksparse_minimal import SparseCholesky as _MinimalCholesky
except ImportError:  # a requirement of the package; absent only in unusual environments
    _MinimalCholesky = None

#: Exceptions a failed numeric factorization raises (not positive definite, singular).
FACTOR_ERRORS: tuple[type[Exception], ...] = (ArithmeticError, RuntimeError, ValueError) + (
    (_scikit.CholmodError,) if _scikit is not None else ()
)


def binding() -> str:
    """``"scikit-sparse"``, ``"sksparse-minimal"`` or ``""`` (no CHOLMOD binding installed)."""
    if _scikit is not None:
        return "scikit-sparse"
    return "sksparse-minimal" if _MinimalCholesky is not None else ""


def fill_reducing_permutation(pattern: sp.spmatrix) -> np.ndarray:
    """CHOLMOD's fill-reducing permutation ``(n,)`` of a symmetric sparsity ``pattern``.

    scikit-sparse: AMD from a symbolic analysis. sksparse-minimal has no symbolic-only call, so
    the pattern is given values that make it diagonally dominant (hence positive definite) and
    factored; CHOLMOD's default ordering (the better of AMD and METIS) is returned.
    Raises RuntimeError when no binding is installed (see :func:`binding`).
    """
    csc = sp.csc_matrix(pattern, dtype=np.float64)
    if _scikit is not None:
        return np.asarray(_scikit.analyze(csc, ordering_method="amd").P())
    if _MinimalCholesky is None:
        raise RuntimeError("no CHOLMOD binding installed (sksparse-minimal or scikit-sparse)")
    spd = _with_stored_diagonal(csc, 0.0)
    spd.data[:] = -1.0
    spd.setdiag(np.diff(spd.indptr) + 1.0)  # >= the column's off-diagonal count + 1: dominant
    return np.asarray(_MinimalCholesky(spd).P()).astype(np.int64)


class NormalEquationsFactor:
    """Solves ``(J^T J + beta I) y = g`` with CHOLMOD, refactoring for each ``(J, beta)``.

    With scikit-sparse the symbolic analysis of ``J^T J`` is done once here and every
    :meth:`solve` refactors numerically; with sksparse-minimal each solve forms the lower
    triangle of ``J^T J + beta I`` and factors it (analysis included).
    """

    def __init__(self, J: sp.csr_matrix) -> None:
        if not binding():
            raise RuntimeError("no CHOLMOD binding installed (sksparse-minimal or scikit-sparse)")
        self._symbolic = _scikit.analyze_AAt(sp.csc_matrix(J.T)) if _scikit is not None else None

    def solve(self, J: sp.csr_matrix, beta: float, gradient: np.ndarray) -> np.ndarray:
        """``(J^T J + beta I)^-1 gradient`` (float64); raises one of :data:`FACTOR_ERRORS`."""
        if self._symbolic is not None:
            self._symbolic.cholesky_AAt_inplace(sp.csc_matrix(J.T), beta=beta)
            return np.asarray(self._symbolic(gradient)).reshape(-1)
        return _MinimalCholesky(_with_stored_diagonal(J.T @ J, beta)).solve_A(
            np.asarray(gradient, dtype=np.float64)
        )


def _with_stored_diagonal(normal: sp.spmatrix, beta: float) -> sp.csc_matrix:
    """``normal + beta I`` as sorted CSC with every diagonal entry stored (even when zero).

    sksparse-minimal reads the lower triangle only (the upper one costs nothing to leave in)
    and aborts the process on an unstored diagonal entry (an empty column of ``J``); stored, a
    zero pivot raises ``ValueError`` like any indefinite matrix.
    """
    matrix = sp.csc_matrix(normal, dtype=np.float64, copy=True)
    with warnings.catch_warnings():  # inserting missing diagonal entries is rare and intended
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        matrix.setdiag(matrix.diagonal() + beta)
    matrix.sort_indices()
    return matrix
