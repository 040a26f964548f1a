"""The one place that decides precision and backend.

A :class:`PrecisionPolicy` says which floating-point type each part of a nonlinear least-squares
solve uses. :func:`precision_policy` builds it from a user-facing :class:`Precision` mode and the
:class:`ProblemKind`, following the published mixed-precision recipe:

===========  ========  ==========  ===============  =======  ======
mode         residual  J products  preconditioner   vectors  update
===========  ========  ==========  ===============  =======  ======
fp64         fp64      fp64        fp64             fp64     fp64
fp32         fp32      fp32        fp32             fp32     fp64
fp16 (naive) fp16      fp16        fp16             fp16     fp16
mixed, BA    fp32      **fp16**    fp32             fp32     fp64
mixed, PGO   fp32      fp32        **fp16**         fp32     fp64
===========  ========  ==========  ===============  =======  ======

``fp16`` stores and rounds every value to float16 and exists to show why naive half precision
fails. On a CPU without native half arithmetic the fp16 parts are *emulated*: values are truly
rounded to float16 (so accuracy effects are real) while products accumulate in float32, as GPU
half-precision sparse kernels do. Speed gains from fp16 therefore appear only on GPUs (and
fp16-capable ARM CPUs), never on this x86 path.

:func:`select_backend` picks NumPy (CPU) or CuPy (CUDA) once; solvers ask it, never guess.
``auto`` picks CUDA only when the CUDA path passed its own check on this machine
(:func:`cuda_self_test`, run once per process): a CuPy that imports and sees a device is not enough.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np

from mp_slam_ros.config import parse_choice
from mp_slam_ros.errors import ConfigError


class Precision(str, enum.Enum):
    """User-facing precision mode (the value of the ``*.precision`` parameters)."""

    FP64 = "fp64"
    FP32 = "fp32"
    FP16 = "fp16"
    MIXED = "mixed"

    @classmethod
    def parse(cls, value: str | Precision, key: str = "precision") -> Precision:
        """Return the mode named by ``value``; raise :class:`ConfigError` naming ``key`` otherwise."""
        return parse_choice(cls, value, key)


class ProblemKind(str, enum.Enum):
    """Which optimization problem a policy is for (the recipe differs between them)."""

    BA = "ba"
    PGO = "pgo"


class Backend(str, enum.Enum):
    """Where the linear algebra runs."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    @classmethod
    def parse(cls, value: str | Backend, key: str = "backend") -> Backend:
        """Return the backend named by ``value``; raise :class:`ConfigError` otherwise."""
        return parse_choice(cls, value, key)


#: Escalation ladder: a failed low-precision step is redone one rung up.
_ESCALATION: dict[Precision, Precision] = {
    Precision.FP16: Precision.MIXED,
    Precision.MIXED: Precision.FP32,
    Precision.FP32: Precision.FP64,
}

#: Largest finite float16 value; fp16 parts are scaled to stay well below it.
FP16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class PrecisionPolicy:
    """Floating-point types of each part of a solve (see the module table).

    ``residual``: dtype residuals and Jacobian values are evaluated and stored in;
    ``matvec``: storage dtype of the Jacobian in the products ``J p`` and ``J^T q``;
    ``preconditioner``: dtype of the preconditioner's factor and triangular solves;
    ``vector``: dtype of iterative-solver vectors, dot products and scalars;
    ``update``: dtype the state increment is rounded to before it is applied in float64.
    """

    mode: Precision
    kind: ProblemKind
    residual: np.dtype
    matvec: np.dtype
    preconditioner: np.dtype
    vector: np.dtype
    update: np.dtype

    @property
    def uses_fp16(self) -> bool:
        """True when any part of the solve is rounded to float16."""
        return np.dtype(np.float16) in (self.residual, self.matvec, self.preconditioner, self.vector)

    def escalated(self) -> PrecisionPolicy | None:
        """The policy one rung up the escalation ladder, or ``None`` from fp64."""
        higher = _ESCALATION.get(self.mode)
        return None if higher is None else precision_policy(higher, self.kind)

    def describe(self) -> dict[str, str]:
        """A JSON-friendly dict of the dtypes (for summaries and statistics messages)."""
        return {
            "mode": self.mode.value,
            "residual": self.residual.name,
            "matvec": self.matvec.name,
            "preconditioner": self.preconditioner.name,
            "vector": self.vector.name,
            "update": self.update.name,
        }


_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)


@functools.lru_cache(maxsize=None)
def precision_policy(mode: Precision | str, kind: ProblemKind | str) -> PrecisionPolicy:
    """Build the :class:`PrecisionPolicy` of ``mode`` for problem ``kind`` (see module table)."""
    mode = Precision.parse(mode)
    kind = ProblemKind(kind)
    if mode is Precision.FP64:
        return PrecisionPolicy(mode, kind, _F64, _F64, _F64, _F64, _F64)
    if mode is Precision.FP32:
        return PrecisionPolicy(mode, kind, _F32, _F32, _F32, _F32, _F64)
    if mode is Precision.FP16:
        return PrecisionPolicy(mode, kind, _F16, _F16, _F16, _F16, _F16)
    base = PrecisionPolicy(mode, kind, _F32, _F32, _F32, _F32, _F64)
    if kind is ProblemKind.BA:
        return replace(base, matvec=_F16)
    return replace(base, preconditioner=_F16)


def round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round ``values`` to ``dtype``; float16 results are returned as float32 holding fp16 values.

    This is how fp16 storage is emulated for kernels that have no half-precision
    implementation on the CPU (SciPy sparse): every value is exactly representable in float16,
    and arithmetic on it in float32 matches a GPU kernel with fp16 inputs and fp32 accumulation.
    """
    if np.dtype(dtype) == _F16:
        if hasattr(values, "__cuda_array_interface__"):  # CuPy: native half conversion on the GPU
            return values.astype(np.float16).astype(np.float32)
        from mp_slam_ros.fp16 import round_to_half  # noqa: PLC0415 (numba: load on first use)

        return round_to_half(values)  # == values.astype(float16).astype(float32), faster
    return values.astype(dtype, copy=False)


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy  # noqa: PLC0415 (optional dependency)

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # ImportError, CUDARuntimeError, missing driver libraries, ...
        return False


#: Norm-wise relative tolerance of the CUDA self-test per compared dtype.
_SELF_TEST_TOLERANCE = {"float16": 2e-2, "float32": 1e-4, "float64": 1e-9}


@functools.lru_cache(maxsize=1)
def cuda_self_test() -> str | None:
    """``None`` when the CUDA path passes its check on this machine, else why not (cached per
    process). The check runs the package's own CUDA code on a tiny problem and compares it with
    the CPU path (see :func:`check_backend_against_cpu`); any exception is a failure."""
    if not cuda_available():
        return "CuPy is not installed or sees no CUDA device"
    try:
        check_backend_against_cpu(Backend.CUDA)
    except Exception as error:  # a broken driver, cuSPARSE, CuPy version, wrong results, ...
        return f"{type(error).__name__}: {error}"
    return None


def check_backend_against_cpu(backend: Backend) -> None:
    """Run the products ``J x``/``J^T y`` (fp16, fp32, fp64 storage), the incomplete-Cholesky
    triangular solves (fp64, fp32, fp16) and a preconditioned CGNR solve (fp64, mixed) of a tiny
    sparse least-squares problem on ``backend`` and on the CPU; raise ``RuntimeError`` naming the
    first part whose results differ by more than the tolerance of its dtype."""
    import scipy.sparse as sp  # noqa: PLC0415 (solver modules import this one: load them lazily)

    from mp_slam_ros.solvers.linear.base import ScaledSystem  # noqa: PLC0415
    from mp_slam_ros.solvers.linear.cgnr import CGNRSolver  # noqa: PLC0415
    from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory  # noqa: PLC0415
    from mp_slam_ros.solvers.linear.operators import SparseOperator  # noqa: PLC0415
    from mp_slam_ros.solvers.summary import LinearSolverOptions  # noqa: PLC0415

    xp, rng = array_module(backend), np.random.default_rng(7)
    J = sp.vstack([sp.eye(24, format="csr"), sp.random(48, 24, density=0.15, random_state=rng)]).tocsr()
    system = ScaledSystem.from_linearization(J, rng.standard_normal(J.shape[0]))
    x, y = rng.standard_normal(J.shape[1]), rng.standard_normal(J.shape[0])

    def host(values: object) -> np.ndarray:
        return np.asarray(values.get() if hasattr(values, "get") else values, dtype=np.float64)

    def compare(part: str, dtype: np.dtype, expected: object, got: object) -> None:
        expected, got = host(expected), host(got)
        error = float(np.linalg.norm(got - expected)) / max(float(np.linalg.norm(expected)), 1e-300)
        if not error <= _SELF_TEST_TOLERANCE[np.dtype(dtype).name]:
            raise RuntimeError(f"{part} ({np.dtype(dtype).name}) on {backend.value} differs from the CPU by {error:.2e}")

    for dtype in (_F16, _F32, _F64):
        cpu, other = SparseOperator(J, dtype, Backend.CPU), SparseOperator(J, dtype, backend)
        compare("J x", dtype, cpu.matvec(x.astype(np.float32)), other.matvec(xp.asarray(x.astype(np.float32))))
        compare("J^T y", dtype, cpu.rmatvec(y.astype(np.float32)), other.rmatvec(xp.asarray(y.astype(np.float32))))
    policy = precision_policy(Precision.FP64, ProblemKind.PGO)
    factory = IncompleteCholeskyFactory(drop_tolerance=3e-3)
    cpu_ic, other_ic = factory(system.jacobian_scaled, 0.0, policy, Backend.CPU), factory(
        system.jacobian_scaled, 0.0, policy, backend)
    for dtype in (_F64, _F32, _F16):
        s = x.astype(np.float32 if dtype == _F16 else dtype)
        compare("incomplete-Cholesky solve", dtype, cpu_ic.apply(s, dtype), other_ic.apply(xp.asarray(s), dtype))
    options = LinearSolverOptions(rtol=1e-10, max_iterations=200)
    for mode, dtype in ((Precision.FP64, _F64), (Precision.MIXED, _F16)):
        policy = precision_policy(mode, ProblemKind.PGO)
        steps = []
        for where in (Backend.CPU, backend):
            solver = CGNRSolver(factory)
            solver.prepare(system, policy, where)
            steps.append(solver.solve(system, 1e-6, policy, options).step_scaled)
        compare(f"CGNR solve ({mode.value})", dtype, *steps)


def select_backend(requested: Backend | str = Backend.AUTO) -> Backend:
    """Resolve ``auto`` to the CPU; accept an explicit ``cuda`` only where the CUDA path passes
    :func:`cuda_self_test` (else :class:`ConfigError` with the reason).

    Why ``auto`` is the CPU even on a GPU machine: measured on an H200 (``bench/gpu_check.sh``,
    results/gpu/README.md), whole solves on CUDA took 1.1-4.6x the time of the CPU path on every
    problem measured (pose graphs of 2,500-20,000 poses, 50-keyframe BA windows): the host-side
    linearization and preconditioners, the per-iteration transfers and launch-bound products
    outweigh the faster kernels at household sizes. ``cuda`` stays available for larger problems
    and GPU work.
    """
    requested = Backend.parse(requested)
    if requested is Backend.AUTO:
        return Backend.CPU
    if requested is Backend.CUDA:
        reason = cuda_self_test()
        if reason is not None:
            raise ConfigError("backend", requested.value, f"the CUDA path is not usable here: {reason}")
    return requested


def array_module(backend: Backend) -> ModuleType:
    """``numpy`` for the CPU backend, ``cupy`` for CUDA."""
    if backend is Backend.CUDA:
        import cupy  # noqa: PLC0415

        return cupy
    return np
