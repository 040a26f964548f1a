"""Options in, Summary out: the contract every solver of the package follows.

:class:`SolverOptions` holds every knob of the Levenberg-Marquardt driver with a default and a
documented stopping rule; :meth:`SolverOptions.validate` explains a bad value. A solve returns a
:class:`Summary` with the termination reason, the cost history, the precision actually used
(after any escalation), problem sizes and wall time split into Jacobian / linear solve / update.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, Precision


class Termination(str, enum.Enum):
    """Why a nonlinear solve stopped."""

    CONVERGED_FUNCTION = "converged_function"  # relative cost decrease < function_tolerance
    CONVERGED_GRADIENT = "converged_gradient"  # max |scaled gradient| < gradient_tolerance
    CONVERGED_STEP = "converged_step"  # |step| < parameter_tolerance * (|x| + tolerance)
    MAX_ITERATIONS = "max_iterations"
    NO_PROGRESS = "no_progress"  # damping hit its maximum without an acceptable step
    NUMERICAL_FAILURE = "numerical_failure"  # non-finite cost or step even in fp64
    USER_STOPPED = "user_stopped"
    TIME_LIMIT = "time_limit"  # the next iteration would have run past max_time_s

    @property
    def converged(self) -> bool:
        """True for the three convergence reasons."""
        return self.value.startswith("converged")


@dataclass
class LinearSolverOptions:
    """Options of the inner (linear) solver.

    The iterative solvers stop when the normal-equation residual ``||J^T (b - J x) - lambda x||``
    falls below ``rtol`` times its initial value, after ``max_iterations``, when it has not
    improved by 1% over ``stall_iterations`` iterations (precision floor reached), or, from
    ``rate_check_iterations`` on, when its average convergence rate so far projects the
    iterations to ``rtol`` past ``max_iterations`` (status ``too_slow``: a weak
    preconditioner; 0, the default, disables the check; PGO enables it).

    ``fallback`` also switches BA's escalation of ``cgnr``/``iterative_schur`` to the direct
    Schur solver (:mod:`.linear.direct_fallback`). ``fallback``, ``direct_max_parameters`` and
    ``tighten_min_parameters`` are for linear solvers with a fallback ladder (PGO's ``cgnr_ic``,
    :mod:`.linear.fallback`): when an inner
    solve fails (cap hit, too slow, stalled without a digit) the preconditioner is refactored at
    the current point (if the Jacobian moved since it was built), then with a tighter drop
    tolerance (only with at least ``tighten_min_parameters`` unknowns: below that, measured up
    to 30,000 unknowns, one direct factorization costs less than a ten times tighter incomplete
    one), then the rest of the solve uses the sparse direct factorization; problems with at
    most ``direct_max_parameters`` unknowns use it from the start. A first iterative solve that
    has not converged within ``race_iterations`` iterations is raced against the direct solver on
    the same system, and the direct solver solves the rest unless CG is projected (from its rate)
    to take less than half its CPU time per solve (0: no race).
    """

    rtol: float = 1e-6
    max_iterations: int = 300
    stall_iterations: int = 20
    rate_check_iterations: int = 0
    fallback: bool = True
    direct_max_parameters: int = 15_000
    tighten_min_parameters: int = 50_000
    race_iterations: int = 20

    def validate(self, prefix: str = "linear") -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        if not 0.0 < self.rtol < 1.0:
            raise ConfigError(f"{prefix}.rtol", self.rtol, "must be in (0, 1)")
        if self.max_iterations < 1:
            raise ConfigError(f"{prefix}.max_iterations", self.max_iterations, "must be >= 1")
        if self.stall_iterations < 2:
            raise ConfigError(f"{prefix}.stall_iterations", self.stall_iterations, "must be >= 2")
        if self.rate_check_iterations < 0:
            raise ConfigError(f"{prefix}.rate_check_iterations", self.rate_check_iterations, "must be >= 0")
        for name in ("direct_max_parameters", "tighten_min_parameters", "race_iterations"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{prefix}.{name}", getattr(self, name), "must be >= 0")


@dataclass
class SolverOptions:
    """Options of the Levenberg-Marquardt driver (keys match YAML, CLI and ROS parameters).

    Stopping rules, checked after every accepted step:

    * ``converged_function``: ``(cost_old - cost_new) / cost_old < function_tolerance`` AND the
      model's predicted relative decrease of the step below it too AND the inner solve trusted
      (converged, or a tenth of its initial residual): a small decrease from a poor inexact or
      heavily damped step is not convergence. A rejected step whose trusted prediction is below
      the tolerance ends the solve the same way (precision floor).
    * ``converged_function`` also when the cost is below ``zero_cost_per_residual`` times the
      number of residuals (for whitened residuals, PGO's 0.5e-6 is a thousandth of a sigma per
      residual: nothing left to fit, e.g. a graph without loop closures, where low-precision
      residuals can only chase rounding noise; 0, the default, disables it);
    * ``converged_gradient``: ``max_j |(S J^T r)_j| / ||r|| < gradient_tolerance`` (S = Jacobi
      column scaling: the largest cosine between the residual and a Jacobian column; 0 at a
      stationary point whatever the units);
    * ``converged_step``: ``|dx| < parameter_tolerance * (|x| + parameter_tolerance)`` where the
      problem reports |x|, with a trusted inner solve.

    Otherwise the solve stops on ``max_iterations`` or ``no_progress`` and says so, or on
    ``time_limit``: with ``max_time_s`` set, a solve that has not stopped stops before an
    iteration that would end past that budget (the mean iteration time so far added to the time
    spent); the solve of a real-time loop (a VO window every keyframe: Ceres'
    ``max_solver_time_in_seconds``, VINS-Mono's ``max_solver_time``) hands back its best state so
    far, not converged, and the next solve starts from it.
    """

    precision: Precision = Precision.MIXED
    backend: Backend = Backend.AUTO
    max_iterations: int = 50
    function_tolerance: float = 1e-10
    gradient_tolerance: float = 1e-12
    parameter_tolerance: float = 1e-10
    initial_damping: float = 1e-4
    max_damping: float = 1e12
    escalate: bool = True
    #: relative gap between the low-precision and the fp64 cost at the final state above which
    #: an escalating solve goes on with more precise residuals instead of stopping (0: never)
    residual_check_tolerance: float = 1e-4
    #: cost per residual at or below which the cost counts as zero (see the stopping rules); the
    #: residual check also measures its gap relative to at least this
    zero_cost_per_residual: float = 0.0
    #: wall-clock budget of one solve in seconds (0: none; see ``time_limit`` above)
    max_time_s: float = 0.0
    linear: LinearSolverOptions = field(default_factory=LinearSolverOptions)

    def validate(self, prefix: str = "") -> None:
        """Raise :class:`ConfigError` naming the first invalid option (dotted key)."""
        key = f"{prefix}." if prefix else ""
        self.precision = Precision.parse(self.precision, f"{key}precision")
        self.backend = Backend.parse(self.backend, f"{key}backend")
        if self.max_iterations < 1:
            raise ConfigError(f"{key}max_iterations", self.max_iterations, "must be >= 1")
        for name in (
            "function_tolerance", "gradient_tolerance", "parameter_tolerance",
            "residual_check_tolerance", "zero_cost_per_residual", "max_time_s",
        ):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"{key}{name}", getattr(self, name), "must be >= 0")
        if not 0.0 < self.initial_damping < self.max_damping:
            raise ConfigError(
                f"{key}initial_damping", self.initial_damping, "must be in (0, max_damping)"
            )
        self.linear.validate(f"{key}linear")


@dataclass
class Timings:
    """Wall time in seconds, split as the recipe reports it."""

    jacobian_s: float = 0.0  # residual + Jacobian evaluation (linearization)
    linear_solve_s: float = 0.0  # scaling, preconditioner, inner iterations
    update_s: float = 0.0  # applying the step in fp64 and evaluating the trial cost
    setup_s: float = 0.0  # building the problem and the linear solver before the first iteration
    total_s: float = 0.0  # everything, setup included


@dataclass
class IterationRecord:
    """One outer (LM) iteration, as shown by progress displays."""

    iteration: int
    cost: float  # cost after this iteration (the trial cost if rejected)
    step_norm: float
    damping: float
    precision: Precision
    linear_iterations: int
    linear_relative_residual: float
    linear_status: str
    accepted: bool
    linear_solver: str = ""  # which linear solver produced the step (e.g. cgnr_ic, cholesky)
    gain_ratio: float = float("nan")  # actual / model-predicted cost decrease (-inf: rejected)


@dataclass
class Escalation:
    """A step that was redone one rung up the precision ladder."""

    iteration: int
    from_precision: Precision
    to_precision: Precision
    reason: str


@dataclass
class LinearSolverChange:
    """What a fallback ladder did to the linear solver (refresh, tighten, direct), and why."""

    iteration: int
    action: str
    reason: str


@dataclass
class Summary:
    """What a solve did (termination, costs, precision actually used, sizes and timings)."""

    termination: Termination
    message: str
    precision_requested: Precision
    precision_used: Precision
    initial_cost: float
    final_cost: float
    cost_history: list[float] = field(default_factory=list)
    iterations: list[IterationRecord] = field(default_factory=list)
    escalations: list[Escalation] = field(default_factory=list)
    linear_solver: str = ""
    backend: Backend = Backend.CPU
    num_residuals: int = 0
    num_parameters: int = 0
    jacobian_nnz: int = 0
    preconditioner_shifts: int = 0
    timings: Timings = field(default_factory=Timings)
    #: refreshes, tightenings and the switch to the direct solver of a fallback ladder
    linear_solver_changes: list[LinearSolverChange] = field(default_factory=list)
    #: dtype of each part of the final policy (PrecisionPolicy.describe()); ``linear_solve`` says
    #: ``fp64 direct`` once the direct solver took over (no fp16 part ran after that)
    precision_parts: dict[str, str] = field(default_factory=dict)
    #: ``max_j |(S J^T r)_j| / ||r||`` at the final state (0 at a stationary point; nan if unknown)
    final_relative_gradient: float = float("nan")

    @property
    def converged(self) -> bool:
        """True when the solve stopped on a convergence criterion."""
        return self.termination.converged

    @property
    def time_limited(self) -> bool:
        """True when the solve stopped on its wall-clock budget (``max_time_s``)."""
        return self.termination is Termination.TIME_LIMIT

    @property
    def num_iterations(self) -> int:
        """Number of outer iterations (accepted and rejected)."""
        return len(self.iterations)

    @property
    def linear_iterations(self) -> int:
        """Total inner (linear-solver) iterations."""
        return sum(record.linear_iterations for record in self.iterations)

    @property
    def linear_solvers_used(self) -> list[str]:
        """The linear solvers that produced steps, in order of first use."""
        return list(dict.fromkeys(record.linear_solver for record in self.iterations if record.linear_solver))

    @property
    def final_linear_residual(self) -> float:
        """Relative residual of the last linear solve (nan if none ran)."""
        return self.iterations[-1].linear_relative_residual if self.iterations else float("nan")

    def change_lines(self) -> list[str]:
        """One line per precision escalation and per linear-solver change, in order of iteration
        (what a CLI prints under its result line)."""
        lines = [(e.iteration, f"escalated at iteration {e.iteration}: {e.from_precision.value} -> "
                               f"{e.to_precision.value} ({e.reason})") for e in self.escalations]
        lines += [(c.iteration, f"linear solver at iteration {c.iteration}: {c.action} ({c.reason})")
                  for c in self.linear_solver_changes]
        return [line for _, line in sorted(lines, key=lambda item: item[0])]

    def to_dict(self) -> dict:
        """A JSON-serializable dict (enums as their values)."""

        def plain(value: object) -> object:
            if isinstance(value, enum.Enum):
                return value.value
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value

        out = plain(asdict(self))
        assert isinstance(out, dict)
        out.update(
            converged=self.converged,
            num_iterations=self.num_iterations,
            linear_iterations=self.linear_iterations,
            linear_solvers_used=self.linear_solvers_used,
            final_linear_residual=self.final_linear_residual,
        )
        return out
