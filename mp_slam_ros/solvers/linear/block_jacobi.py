"""Block-Jacobi preconditioners for CGNR: ``M = blockdiag(J_s^T J_s) + damping I`` (or any blocks),
and for BA the point-eliminated (Schur-Jacobi) one, :class:`SchurJacobiPreconditioner`.

The column blocks are contiguous parameter blocks (6 per pose and 3 per landmark in BA). Each
diagonal block of the normal matrix is accumulated from the CSR rows of ``J_s`` (numba; only
entries of one row inside one block meet), then inverted by a batched symmetric eigensolver;
eigenvalues below ``1e-6`` of the block's largest are raised to that floor (counted in
``shifts``: a block of a parameter the data cannot see). ``apply`` is two batched small
matrix-vector products in the policy's preconditioner dtype (float16 emulated: inverse blocks,
input and output rounded to float16, arithmetic in float32).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, PrecisionPolicy, array_module, round_to
from mp_slam_ros.solvers.linear.cgnr import PreconditionerFactory
from mp_slam_ros.solvers.linear.operators import compute_dtype
from mp_slam_ros.solvers.linear.schur import _back_substitute, _reduced_camera_system, diagonal_blocks

if TYPE_CHECKING:  # ba.py builds these preconditioners; import only for the annotation
    from mp_slam_ros.solvers.ba import BAStructure

#: Eigenvalue floor relative to the largest eigenvalue of a block.
_RELATIVE_FLOOR = 1e-6


def block_jacobi(block_starts: np.ndarray) -> PreconditionerFactory:
    """A :data:`PreconditionerFactory` for contiguous column blocks ``[starts[i], starts[i+1])``.

    ``block_starts`` is increasing, starts at 0 and ends with the number of columns (e.g.
    :meth:`mp_slam_ros.solvers.ba.BAStructure.column_block_starts`).
    """
    starts = np.asarray(block_starts, dtype=np.int64)
    if starts.ndim != 1 or starts.size < 1 or starts[0] != 0 or np.any(np.diff(starts) <= 0):
        raise ValueError("block_starts must start at 0 and increase strictly")

    def factory(
        J_s: sp.csr_matrix, damping: float, policy: PrecisionPolicy, backend: Backend
    ) -> BlockJacobiPreconditioner:
        return BlockJacobiPreconditioner.from_jacobian(J_s, damping, starts, policy, backend)

    return factory


class BlockJacobiPreconditioner:
    """``z = M^-1 s`` with ``M`` symmetric blocks on the diagonal (plus ``damping I``).

    ``blocks`` ``(nb, k_max, k_max)`` float64: block ``b`` covers columns
    ``[block_starts[b], block_starts[b + 1])`` in its leading corner; :meth:`from_jacobian`
    takes them from ``J_s^T J_s``, the iterative Schur solver from the reduced camera system.
    """

    def __init__(
        self,
        blocks: np.ndarray,
        damping: float,
        block_starts: np.ndarray,
        policy: PrecisionPolicy,
        backend: Backend = Backend.CPU,
    ) -> None:
        sizes = np.diff(block_starts)
        self.shifts = 0
        self._columns: list[np.ndarray] = []  # per block size: (nb, k) column indices
        self._inverses: list[np.ndarray] = []  # per block size: (nb, k, k) float64
        for size in np.unique(sizes):
            chosen = np.flatnonzero(sizes == size)
            inverse, floored = _damped_inverse(blocks[chosen, :size, :size], damping)
            self.shifts += floored
            self._columns.append(block_starts[chosen, None] + np.arange(size))
            self._inverses.append(inverse)
        self._xp = array_module(backend)
        self._by_dtype: dict[np.dtype, list[tuple[object, object]]] = {}
        self._groups(policy.preconditioner)

    @classmethod
    def from_jacobian(
        cls, J_s: sp.csr_matrix, damping: float, block_starts: np.ndarray, policy: PrecisionPolicy,
        backend: Backend = Backend.CPU,
    ) -> BlockJacobiPreconditioner:
        """The damped block diagonal of ``J_s^T J_s``."""
        if int(block_starts[-1]) != J_s.shape[1]:
            raise ValueError(f"blocks cover {block_starts[-1]} columns, J_s has {J_s.shape[1]}")
        sizes = np.diff(block_starts)
        max_size = int(sizes.max())
        block_of_column = np.repeat(np.arange(sizes.size), sizes)
        gram = np.zeros((sizes.size, max_size, max_size))
        _accumulate_block_gram(J_s.indptr, J_s.indices, J_s.data.astype(np.float64, copy=False),
                               block_of_column, block_starts, gram)
        return cls(gram, damping, block_starts, policy, backend)

    def _groups(self, dtype: np.dtype) -> list[tuple[object, object]]:
        """``(columns, inverse)`` pairs with the inverses rounded to ``dtype`` (cached)."""
        dtype = np.dtype(dtype)
        if dtype not in self._by_dtype:
            with np.errstate(over="ignore"):  # overflow to inf is detected by CGNR
                self._by_dtype[dtype] = [
                    (self._xp.asarray(columns), self._xp.asarray(round_to(inverse, dtype)))
                    for columns, inverse in zip(self._columns, self._inverses)
                ]
        return self._by_dtype[dtype]

    def apply(self, s: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``M^-1 s`` computed in ``dtype`` (float16 emulated), returned in ``s.dtype``."""
        xp = self._xp
        dtype = np.dtype(dtype)
        work = compute_dtype(dtype)
        s_in = round_to(s, dtype) if dtype == np.float16 else s.astype(work, copy=False)
        z = xp.empty(s.shape[0], dtype=work)
        for columns, inverse in self._groups(dtype):
            z[columns] = xp.einsum("bij,bj->bi", inverse, s_in[columns])
        if dtype == np.float16:
            z = round_to(z, dtype)
        return z.astype(s.dtype, copy=False)


def _damped_inverse(blocks: np.ndarray, damping: float) -> tuple[np.ndarray, int]:
    """Inverses of symmetric blocks ``(nb, k, k)`` plus ``damping I``; counts floored blocks."""
    eigenvalues, eigenvectors = np.linalg.eigh(blocks)
    eigenvalues = eigenvalues + damping
    floor = _RELATIVE_FLOOR * np.maximum(eigenvalues[:, -1:], np.finfo(np.float64).tiny)
    floored = eigenvalues < floor
    eigenvalues = np.where(floored, floor, eigenvalues)
    inverse = np.einsum("bik,bk,bjk->bij", eigenvectors, 1.0 / eigenvalues, eigenvectors)
    return inverse, int(np.count_nonzero(np.any(floored, axis=1)))


@numba.njit(cache=True, nogil=True)
def _accumulate_block_gram(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
    block_of_column: np.ndarray, block_starts: np.ndarray, gram: np.ndarray,
) -> None:
    """``gram[b] += outer(J[row, block b], J[row, block b])`` over all rows."""
    for row in range(indptr.shape[0] - 1):
        for k1 in range(indptr[row], indptr[row + 1]):
            c1 = indices[k1]
            block = block_of_column[c1]
            i = c1 - block_starts[block]
            for k2 in range(indptr[row], indptr[row + 1]):
                c2 = indices[k2]
                if block_of_column[c2] == block:
                    gram[block, i, c2 - block_starts[block]] += data[k1] * data[k2]


def schur_jacobi(structure: BAStructure) -> PreconditionerFactory:
    """A :data:`PreconditionerFactory` of :class:`SchurJacobiPreconditioner` for a BA structure."""

    def factory(
        J_s: sp.csr_matrix, damping: float, policy: PrecisionPolicy, backend: Backend
    ) -> SchurJacobiPreconditioner:
        return SchurJacobiPreconditioner(structure, J_s, damping, policy, backend)

    return factory


class SchurJacobiPreconditioner:
    """CGNR preconditioner for BA with the landmarks eliminated exactly (point-block-eliminated Jacobi).

    With ``A = J_s^T J_s + damping I = [[B, E], [E^T, C]]`` (cameras, then landmarks; ``C`` 3x3
    block-diagonal) and ``S = B - E C^-1 E^T`` the reduced camera system, ``M`` is ``A`` with
    ``S`` replaced by its 6x6 diagonal blocks ``D``: ``M = L diag(D, C) L^T``,
    ``L = [[I, E C^-1], [0, I]]``. Then ``M^-1 A`` is similar to ``diag(D^-1 S, I)``: CGNR meets
    the spectrum of the iterative Schur solver's preconditioned ``S`` (plus a cluster at 1), not
    the camera-landmark coupling that leaves block-Jacobi many small eigenvalues on monocular
    windows. Applying ``M^-1`` is a landmark solve, one pass over the observations' 6x3 coupling
    blocks, the camera blocks, and the landmark back-substitution. Built for every solve (``C``
    holds the damping) by one float64 pass over the Jacobian values rounded to the ``matvec``
    dtype (the setup kernel of :class:`~mp_slam_ros.solvers.linear.schur.SchurSolver`); the
    camera blocks apply in the policy's preconditioner dtype, the landmark elimination in
    float64 on the host (its flops are those of about one ``J`` product).
    """

    def __init__(
        self, structure: BAStructure, J_s: sp.csr_matrix, damping: float, policy: PrecisionPolicy,
        backend: Backend = Backend.CPU,
    ) -> None:
        s = structure
        n_pose = s.num_pose_columns
        data = round_to(J_s.data, policy.matvec).astype(np.float64, copy=False)
        band = np.empty((6, n_pose), order="F")
        self._H_ll_inv = np.empty((s.num_points, 3, 3))
        self._W = np.empty((s.obs_cam.size, 3, 6))
        _reduced_camera_system(
            J_s.indptr, data, np.zeros(J_s.shape[0]), damping, s.cam_column, s.obs_cam, s.obs_stereo_row,
            s.point_obs_ptr, band, np.empty(n_pose), self._H_ll_inv, np.empty((s.num_points, 3)), self._W, 0,
        )
        starts = np.arange(0, n_pose + 1, 6)
        # the whole apply runs on the host (numba): its camera blocks stay there on any backend
        self._cameras = BlockJacobiPreconditioner(diagonal_blocks(band), 0.0, starts, policy, Backend.CPU)
        self.shifts = self._cameras.shifts
        self._structure = structure
        self._xp = array_module(backend)

    def apply(self, s: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``M^-1 s``: camera blocks in ``dtype`` (float16 emulated), returned in ``s.dtype``."""
        st = self._structure
        n_pose = st.num_pose_columns
        host = np.asarray(s.get() if hasattr(s, "get") else s, dtype=np.float64)
        s_point = host[n_pose:].reshape(-1, 3)
        u_point = np.einsum("pij,pj->pi", self._H_ll_inv, s_point)
        t_pose = host[:n_pose].copy()
        _subtract_coupling(u_point, self._W, st.cam_column, st.obs_cam, st.point_obs_ptr, t_pose)
        z_pose = self._cameras.apply(t_pose, dtype)
        z_point = np.empty_like(s_point)
        _back_substitute(z_pose, self._H_ll_inv, s_point, self._W, st.cam_column, st.obs_cam, st.point_obs_ptr, z_point)
        z = np.concatenate([z_pose, z_point.ravel()])
        if np.dtype(dtype) == np.float16:
            z = round_to(z, dtype)
        return self._xp.asarray(z.astype(s.dtype, copy=False))


@numba.njit(cache=True, nogil=True)
def _subtract_coupling(
    u_point: np.ndarray, W: np.ndarray, cam_column: np.ndarray, obs_cam: np.ndarray,
    point_obs_ptr: np.ndarray, t_pose: np.ndarray,
) -> None:
    """``t_pose -= E u_point``: every observation's ``W_o^T u`` into its free camera's 6 entries."""
    for point in range(point_obs_ptr.shape[0] - 1):
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            c = cam_column[obs_cam[o]]
            if c < 0:
                continue
            for i in range(6):
                t_pose[c + i] -= W[o, 0, i] * u_point[point, 0] + W[o, 1, i] * u_point[point, 1] + W[o, 2, i] * u_point[point, 2]
