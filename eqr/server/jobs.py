"""The wire types: a job in, iteration events and one result out.

:class:`Status`, :class:`SolveParams`, :class:`Job`, :class:`IterationEvent` and
:class:`SolveResult` are the contract between the API, the brokers and the engine. They are plain
dataclasses with no tensors and this module imports neither torch nor numpy, so they cross
threads, processes and Redis unchanged and an API node that never loads a model can use them.
"""

from __future__ import annotations

import enum
import math
import time
import uuid
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    VERIFIED = "verified"  # verified mode: the answer passed the task's rules (however its trajectory stopped)
    CONVERGED = "converged"  # the answer came from converged trajectories
    MAX_ITERATIONS = "max_iterations"  # depth budget used without convergence
    DEADLINE = "deadline"  # timeout_ms passed; best-so-far answer
    CANCELLED = "cancelled"
    FAILED = "failed"  # the engine raised; ``error`` says why


@dataclass(frozen=True)
class SolveParams:
    """Per-request budgets and knobs; ``None`` means the model's / server's default."""

    depth: int | None = None
    breadth: int = 1
    aggregate: str | None = None  # "converged" (most-converged) or "vote"; None: the model's default
    quorum: int | None = None  # stop remaining siblings once this many trajectories agree
    noise: float | None = None
    seed: int | None = None
    timeout_ms: int | None = None
    priority: int = 0  # higher runs first; aging prevents starvation
    halt: str = "convergence"  # "convergence" or "q_halt" (learned halting)
    stream_every: int = 1
    verify: bool | None = None  # verified mode (restart what fails the task's verify, stop at a verified answer)
    budget: int | None = None  # most iterations of all the request's trajectories, restarts included
    breadth_mode: str | None = None  # "fixed" or "on_demand" (breadth is a cap); None: the model's default


@dataclass
class Job:
    """One puzzle to solve, already read by the model's task.

    ``tokens``: the puzzle as the model's token ids; ``model``: the served model it is for (empty: the
    only one); ``form``: how the client wrote the puzzle, echoed in the result so whoever renders the
    answer (another API node, a later GET) shows it the same way.
    """

    tokens: list[int]
    params: SolveParams = field(default_factory=SolveParams)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    model: str = ""
    form: str = ""
    submitted_at: float = field(default_factory=time.time)


@dataclass
class IterationEvent:
    request_id: str
    iteration: int  # highest iteration reached by any live trajectory of the request
    board: list[int]  # current best board, token ids (the task shows them)
    residual: float
    live_trajectories: int


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
    tokens = job.tokens if isinstance(job.tokens, list) and all(isinstance(t, int) for t in job.tokens) else []
    return SolveResult(
        request_id=job.id,
        status=Status.FAILED,
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
