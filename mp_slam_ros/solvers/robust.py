"""Robust losses (Huber, Cauchy) and the reweighting that lets Levenberg-Marquardt use them.

A robust problem minimizes ``1/2 sum_i rho(s_i)`` with ``s_i = ||r_i||^2`` the squared norm of
residual block ``i`` (one observation). The Gauss-Newton model used by the LM driver is the
iteratively-reweighted one: every block's residual and Jacobian rows are multiplied by
``sqrt(rho'(s_i))``. Its gradient ``rho'(s) J^T r`` is exact and its Hessian approximation
``rho'(s) J^T J`` stays positive semi-definite (Ceres' Triggs correction also adds a ``rho''``
term; without it the model is only first-order exact, which LM's step control absorbs).

Conventions follow Ceres: ``scale`` is the residual norm (in whitened units, e.g. sigmas) where
the loss stops being quadratic; ``rho(s) = s`` for small ``s``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.config import parse_choice

FloatArray = NDArray[np.float64]


class LossKind(str, enum.Enum):
    """Name of a robust loss (the value of ``ba.loss``)."""

    NONE = "none"
    HUBER = "huber"
    CAUCHY = "cauchy"


@dataclass(frozen=True)
class RobustLoss:
    """``rho(s)`` of :class:`LossKind` ``kind`` with transition at residual norm ``scale``."""

    kind: LossKind = LossKind.NONE
    scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", parse_loss_kind(self.kind))
        if not (np.isfinite(self.scale) and self.scale > 0.0):
            raise ConfigError("loss_scale", self.scale, "must be a finite positive number")

    @property
    def is_trivial(self) -> bool:
        """True for the plain squared loss (no reweighting needed)."""
        return self.kind is LossKind.NONE

    def rho_and_weight(self, squared_norm: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``rho(s)`` and ``rho'(s)`` for squared residual norms ``s`` ``(N,)`` (float64, one pass)."""
        s = np.ascontiguousarray(squared_norm, dtype=np.float64).reshape(-1)
        rho, weight = np.empty_like(s), np.empty_like(s)
        _loss_arrays(LOSS_CODES[self.kind], self.scale, s, rho, weight)
        return rho.reshape(np.shape(squared_norm)), weight.reshape(np.shape(squared_norm))

    def rho(self, squared_norm: FloatArray) -> FloatArray:
        """``rho(s)`` for squared residual norms ``s`` ``(N,)`` (float64)."""
        return self.rho_and_weight(squared_norm)[0]

    def weight(self, squared_norm: FloatArray) -> FloatArray:
        """``rho'(s)`` ``(N,)`` in ``(0, 1]``: the IRLS weight of each residual block."""
        return self.rho_and_weight(squared_norm)[1]

    def cost(self, squared_norm: FloatArray) -> float:
        """``1/2 sum rho(s)`` summed in float64."""
        return 0.5 * float(np.sum(self.rho(squared_norm)))

    def describe(self) -> str:
        """``"none"`` or e.g. ``"huber(2)"`` for summaries and progress output."""
        return self.kind.value if self.is_trivial else f"{self.kind.value}({self.scale:g})"


def parse_loss_kind(value: str | LossKind, key: str = "loss") -> LossKind:
    """Return the :class:`LossKind` named by ``value``; raise :class:`ConfigError` otherwise."""
    return parse_choice(LossKind, value, key)


def reweight_factors(loss: RobustLoss, squared_norm: FloatArray) -> tuple[float, FloatArray | None]:
    """Robust cost ``1/2 sum rho(s)`` and the per-block factors ``sqrt(rho'(s))`` (``None`` if trivial)."""
    if loss.is_trivial:
        return 0.5 * float(np.sum(squared_norm, dtype=np.float64)), None
    rho, weight = loss.rho_and_weight(squared_norm)
    return 0.5 * float(np.sum(rho)), np.sqrt(weight)


#: Codes of :class:`LossKind` for compiled kernels (:func:`loss_terms`).
LOSS_CODES = {LossKind.NONE: 0, LossKind.HUBER: 1, LossKind.CAUCHY: 2}


@numba.njit(cache=True, nogil=True, inline="always")
def loss_terms(code: int, scale: float, s: float) -> tuple[float, float, float]:
    """``(rho(s), rho'(s), rho''(s))`` of the loss with :data:`LOSS_CODES` ``code`` (numba)."""
    c2 = scale * scale
    if code == 1 and s > c2:
        root = np.sqrt(s)
        return 2.0 * scale * root - c2, scale / root, -0.5 * scale / (s * root)
    if code == 2:
        inv = 1.0 / (1.0 + s / c2)
        return c2 * np.log1p(s / c2), inv, -inv * inv / c2
    return s, 1.0, 0.0


@numba.njit(cache=True, nogil=True)
def _loss_arrays(code: int, scale: float, s: np.ndarray, rho: np.ndarray, weight: np.ndarray) -> None:
    """``rho(s)`` and ``rho'(s)`` of every entry (:func:`loss_terms`)."""
    for i in range(s.shape[0]):
        rho[i], weight[i], _ = loss_terms(code, scale, s[i])
