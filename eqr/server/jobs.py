"""The wire types: a job in, iteration events and one result out.

:class:`Status`, :class:`SolveParams`, :class:`Job`, :class:`IterationEvent` and
:class:`SolveResult` are the contract between the API, the brokers and the engine. They are plain
dataclasses with no tensors and this module imports neither torch nor numpy, so they cross
threads, processes and Redis unchanged and an API node that never loads a model can use them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any


class Status(str, enum.Enum):
    VERIFIED = "verified"  # verified mode: the answer passed the task's rules (however its trajectory stopped)
    CONVERGED = "converged"  # the answer came from converged trajectories
    MAX_ITERATIONS = "max_iterations"  # depth budget used without convergence
    STUCK = "stuck"  # verified mode with stuck_after: one wrong answer kept coming back; best-so-far answer
    DEADLINE = "deadline"  # timeout_ms passed; best-so-far answer
    CANCELLED = "cancelled"
    FAILED = "failed"  # the engine raised; ``error`` says why


# -- the request fields: declared once ------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """What every layer knows of one request field: the API schema, the validation, the CLI flags and
    the SDK's options follow from (or are checked against) it. A field's value is ``None`` until a
    request, its preset or the model folder sets it; ``default`` is what it then resolves to when none
    of them does (``None``: the plan resolves it from the model, see ``eqr.server.engine.plan``)."""

    kind: type  # int, float, bool or str
    doc: str
    default: Any = None
    lo: float | None = None  # smallest value (numbers)
    hi: float | None = None  # largest value anywhere (numbers); an engine cap may be lower
    cap: str | None = None  # the engine cap (``Engine.caps``) that bounds it: depth, breadth, budget
    choices: tuple[str, ...] | None = None  # the allowed words (kind str)


def _field(spec: FieldSpec) -> Any:
    return field(default=None, metadata={"spec": spec})


# named sets of request fields: a request naming a preset gets its values for every field it leaves out.
# ``paper``: the official Sudoku evaluation protocol of the EqR paper (the ACT-streaming configs at
# ``locuslab/EqR`` ``e993482``; docs/paper-protocol.md): depth 64, 128 random starts, noise 0.5, learned
# halting (``q_halt > 0``), the most-converged trajectory's answer (the first of the evaluator's top-k).
# Meant for converted paper checkpoints; the small bundled models were not trained for noise 0.5.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"depth": 64, "breadth": 128, "noise": 0.5, "halt": "q_halt", "aggregate": "converged"},
}
AGGREGATES = ("converged", "vote")  # most-converged trajectory (the paper's), or a majority over whole boards
BREADTH_MODES = ("fixed", "on_demand")  # fixed: all of breadth starts; on_demand: breadth is a cap
HALTS = ("convergence", "q_halt")  # the convergence rule, or the learned halting head
# verified mode's restart after a failed answer: fresh latents everywhere, or the failed trajectory's final
# latents with only the cells the task finds in conflict drawn fresh (policies.RESTART_POLICIES)
RESTARTS = ("full", "renoise")


@dataclass(frozen=True)
class SolveParams:
    """A request's fields, as the client set them (``None``: not set). The one declaration of them:
    each carries its :class:`FieldSpec` (:func:`field_specs`). Adding a field here, with its policy
    in ``eqr.server.engine.policies``, is all a new knob takes."""

    preset: str | None = _field(
        FieldSpec(
            str,
            "named values for every field the request leaves out: `paper` is the EqR paper's Sudoku protocol "
            "(depth 64, breadth 128, noise 0.5, learned halting, most-converged answer), for converted paper "
            "checkpoints",
            choices=tuple(PRESETS),
        )
    )
    depth: int | None = _field(
        FieldSpec(int, "max iterations per trajectory (server-capped)", lo=1, hi=1_000_000, cap="depth")
    )
    breadth: int | None = _field(
        FieldSpec(int, "trajectories from independent random starts (server-capped)", 1, lo=1, hi=4096, cap="breadth")
    )
    aggregate: str | None = _field(
        FieldSpec(
            str,
            "how breadth picks the answer: the most-converged trajectory (the paper's rule) or a majority vote "
            "over whole boards; default: the model's (GET /v1/models, `defaults.aggregate`)",
            choices=AGGREGATES,
        )
    )
    quorum: int | None = _field(
        FieldSpec(int, "stop remaining trajectories once this many agree (at most the breadth)", lo=1, hi=4096)
    )
    noise: float | None = _field(FieldSpec(float, "latent noise scale; default from the model", lo=0, hi=10))
    seed: int | None = _field(
        FieldSpec(int, "same seed, same answer (alone or batched); default: drawn at random", lo=0, hi=2**63 - 1)
    )
    timeout_ms: int | None = _field(
        FieldSpec(int, "answer best-so-far after this long (the deadline)", lo=1, hi=3_600_000)
    )
    priority: int | None = _field(FieldSpec(int, "higher runs first; waiting raises priority", 0, lo=-1000, hi=1000))
    halt: str | None = _field(FieldSpec(str, "convergence rule or learned halting", "convergence", choices=HALTS))
    stream_every: int | None = _field(
        FieldSpec(int, "streaming: an event every this many iterations", 1, lo=1, hi=1_000_000)
    )
    breadth_mode: str | None = _field(
        FieldSpec(
            str,
            "fixed: every trajectory of `breadth` runs; on_demand: `breadth` is a cap, `quorum` (default 2) "
            "trajectories start and one more joins only while the finished ones cannot agree; default: the model's",
            choices=BREADTH_MODES,
        )
    )
    verify: bool | None = _field(
        FieldSpec(
            bool,
            "verified mode: a trajectory whose answer fails the task's rules is followed by a fresh one (a "
            "restart) while the budget lasts, the first verified answer ends the request, and the answer never "
            "changes a given; without a `depth` each trajectory gets the model's verify_depth (its restart "
            "schedule); default: the model's (off: pure EqR)",
        )
    )
    restart: str | None = _field(
        FieldSpec(
            str,
            "verified mode: what a restart after a failed answer starts from: `full`, fresh random latents (the "
            "next seed's); `renoise`, the failed trajectory's final latents with only the cells that break a rule "
            "or a given drawn fresh from the next seed (local search; a task that cannot say which cells are "
            "wrong restarts in full); default: the model's (`full` unless its folder says otherwise)",
            choices=RESTARTS,
        )
    )
    stuck_after: int | None = _field(
        FieldSpec(
            int,
            "verified mode: end the request (status `stuck`) once one wrong answer has failed this many times, as "
            "its restarts keep landing on the same wrong attractor, rather than spend the rest of the budget; "
            "default: the model's (none: spend the budget)",
            lo=2,
            hi=1_000_000,
        )
    )
    budget: int | None = _field(
        FieldSpec(
            int,
            "most iterations of all the request's trajectories together, restarts included (server-capped); "
            "shared equally by the breadth; default: none, or in verified mode the model's verify_budget "
            "(else 32 × depth × breadth)",
            lo=1,
            hi=1_000_000,
            cap="budget",
        )
    )

    def with_preset(self) -> SolveParams:
        """These fields with the preset's values for those left out (the request's own win)."""
        preset = PRESETS.get(self.preset, {}) if self.preset is not None else {}
        return dataclasses.replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})


def field_specs() -> dict[str, FieldSpec]:
    """Every request field's name and spec, in declaration order."""
    return {f.name: f.metadata["spec"] for f in fields(SolveParams)}


@dataclass
class Job:
    """One puzzle to solve, already read by the model's task.

    ``tokens``: the puzzle as the model's token ids; ``model``: the served model it is for (empty: the
    only one); ``form``: how the client wrote the puzzle, echoed in the result so whoever renders the
    answer (another API node, a later GET) shows it the same way; ``client``: who sent it.
    """

    tokens: list[int]
    params: SolveParams = field(default_factory=SolveParams)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    model: str = ""
    form: str = ""
    submitted_at: float = field(default_factory=time.time)
    # who sent it, as the API's rate limits name clients ("key:<fingerprint>" or "ip:<address>"; empty:
    # in-process): the scheduler gives each client a share of the slots
    client: str = ""


@dataclass
class IterationEvent:
    """One streamed trajectory's state: every ``stream_every`` steps the request's most settled running
    trajectory, and each trajectory's last iteration when it leaves with its answer (``ended`` set)."""

    request_id: str
    iteration: int  # that trajectory's iterations so far (a restart counts from 1 again)
    board: list[int]  # its current prediction, token ids (the task shows them)
    residual: float
    live_trajectories: int  # the request's trajectories still running
    trajectory: int = 0  # its index in the request (seed order): its place in the result's `iterations`
    restart: int = 0  # verified mode: 0 for the breadth's trajectories, n for the n-th restart
    ended: str | None = None  # its last iteration: why it left (converged, halted, depth); None while running
    verified: bool | None = None  # verified mode, on its last iteration: its answer passed the task's rules


@dataclass
class SolveResult:
    request_id: str
    status: Status
    answer: list[int]  # token ids (the task shows them)
    valid: bool | None  # obeys the task's rules and keeps the givens (reported, not used to steer); None: no rules
    iterations: list[int]  # iterations run per trajectory
    # of the chosen trajectory: the iteration at which its answer appeared and then stayed (its
    # `iterations` add the confirmation window); None if it never converged
    iterations_to_convergence: int | None
    agreement: float  # share of trajectories agreeing with the answer
    convergence_score: float  # mean logit change over the last 3 iterations (lower = more settled); inf: none ran
    queued_ms: float
    compute_ms: float
    error: str | None = None
    seed: int | None = None  # the request seed actually used (drawn at random when the job gave none)
    model: str = ""  # echoed from the job
    form: str = ""  # echoed from the job
    verified: bool | None = None  # verified mode: the answer passed the task's verify; None: not in verified mode
    restarts: int = 0  # fresh trajectories verified mode started after failed answers


def bare_failure(job: Job, error: str, seed: int | None = None) -> SolveResult:
    """A ``failed`` result built without aggregation, for when even that cannot run: no iterations,
    the puzzle itself as the answer."""
    return unstarted_result(job, Status.FAILED, error, seed)


def unstarted_result(job: Job, status: Status, error: str | None = None, seed: int | None = None) -> SolveResult:
    """The result of a job that never ran (failed before it could, or cancelled while queued): no
    iterations, the puzzle itself as the answer."""
    tokens = job.tokens if isinstance(job.tokens, list) and all(isinstance(t, int) for t in job.tokens) else []
    return SolveResult(
        request_id=job.id,
        status=status,
        answer=list(tokens),
        valid=False,
        iterations=[0] * (breadth if isinstance(breadth := job.params.breadth, int) and breadth > 0 else 1),
        iterations_to_convergence=None,
        agreement=0.0,
        convergence_score=math.inf,
        queued_ms=0.0,
        compute_ms=0.0,
        error=error,
        seed=seed,
        model=job.model,
        form=job.form,
    )
