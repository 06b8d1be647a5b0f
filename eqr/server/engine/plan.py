"""One resolution step: a request's fields, its preset and the model folder's defaults become a
:class:`Plan`, the typed, immutable description of how the request is computed.

:func:`resolve` is the only place defaults are applied. The embedded engine resolves every job it
is given; the Redis API node, which never loads a model, resolves each job against the defaults
and caps its workers advertise (the model card), so a bad request is refused at the edge with the
same message. The model card (``GET /v1/models``) publishes :meth:`ModelDefaults.as_dict`, the very
values :func:`resolve` uses. Torch-free: the API node imports it.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eqr.model.tasks.base import Task
from eqr.server.engine.interface import InvalidParam
from eqr.server.engine.validation import check_job, check_params
from eqr.server.jobs import AGGREGATES, BREADTH_MODES, PRESETS, RESTARTS, Job, SolveParams, field_specs

# verified mode's restart schedule when the model folder names no budget: this many depth-capped
# trajectories per unit of breadth (restarts included), so a puzzle the model cannot answer costs a
# bounded, known amount
VERIFY_BUDGET_DEPTHS = 32
# breadth on demand's quorum when the request sets none: two agreeing trajectories settle it, so an
# easy puzzle costs two trajectories whatever breadth it asked for
ON_DEMAND_QUORUM = 2


@dataclass(frozen=True)
class ModelDefaults:
    """What a request that leaves a field out gets from the model folder (its ``inference`` block),
    with the server's overrides and caps applied. Published on the model card."""

    depth: int
    noise: float = 0.0
    # the convergence rule (prediction unchanged ``window`` iterations, latent residual under ``tol``); None
    # only in a card that does not publish it (it is the engine's, not the plan's)
    window: int | None = None
    tol: float | None = None
    aggregate: str = "converged"
    breadth_mode: str = "fixed"
    verify: bool = False
    # verified mode's restart schedule: a trajectory not verified after verify_depth iterations makes way
    # for a fresh one (None: the request's depth), within verify_budget iterations per puzzle (None:
    # VERIFY_BUDGET_DEPTHS x depth x breadth); docs/eval/restart-schedule.txt measured both
    verify_depth: int | None = None
    verify_budget: int | None = None
    # what verified mode's restarts start from (jobs.RESTARTS): fresh latents, or the failed trajectory's with
    # its cells in conflict re-noised; docs/eval/restarts.txt measured both
    restart: str = "full"
    # verified mode's early stop: one wrong answer failing this many times ends the request (None: never)
    stuck_after: int | None = None
    breadth: int = 1
    halt: str = "convergence"
    stream_every: int = 1
    # the presets made for this model (``inference.presets``): a request naming another is refused, since a
    # preset's values (the paper's noise 0.5) can be far outside what the model was trained with
    presets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.presets, str) or not all(p in PRESETS for p in self.presets):
            raise ValueError(f"the model's inference.presets must be a list of {tuple(PRESETS)}, got {self.presets!r}")
        object.__setattr__(self, "presets", tuple(self.presets))  # a card's JSON list, as the folder's tuple
        if self.breadth_mode not in BREADTH_MODES:
            raise ValueError(f"the model's inference.breadth_mode must be one of {BREADTH_MODES}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"the model's inference.aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if self.restart not in RESTARTS:
            raise ValueError(f"the model's inference.restart must be one of {RESTARTS}, got {self.restart!r}")

    @classmethod
    def from_folder(
        cls, inference: Mapping[str, Any] | None, *, depth: int, noise: float, window: int, tol: float
    ) -> ModelDefaults:
        """The folder's ``inference`` block over the fallbacks given (the model's training depth and noise,
        the server's convergence rule); ``depth`` and ``noise`` there win over the block's."""
        meta = inference or {}
        return cls(
            depth=depth,
            noise=noise,
            window=window,
            tol=tol,
            # a model whose most-converged trajectory is often a stable wrong board (the bundled Sudoku
            # model) makes breadth pay only with a vote
            aggregate=str(meta.get("aggregate", "converged")),
            breadth_mode=str(meta.get("breadth_mode", "fixed")),
            verify=bool(meta.get("verify", False)),
            verify_depth=meta.get("verify_depth"),
            verify_budget=meta.get("verify_budget"),
            restart=str(meta.get("restart", "full")),
            stuck_after=meta.get("stuck_after"),
            presets=tuple(meta.get("presets", ())),
        )

    @classmethod
    def from_card(cls, defaults: Mapping[str, Any], caps: Mapping[str, int]) -> ModelDefaults:
        """The defaults a model card publishes (a worker's, read by a Redis API node); unknown keys ignored,
        a depth it does not name is its cap."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"depth": caps["depth"], **{k: v for k, v in defaults.items() if k in names}})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """How one request is computed; every policy reads its part of it and nothing else of the request."""

    depth: int  # iteration cap of each trajectory (verified mode: its restart schedule's)
    breadth: int  # trajectories (on demand: at most)
    breadth_mode: str  # fixed | on_demand
    quorum: int | None  # this many agreeing finished trajectories end the request
    noise: float
    seed: int
    aggregate: str  # converged | vote
    halt: str  # convergence | q_halt
    verify: bool  # verified restarts
    restart: str  # what a verified-mode restart starts from: full | renoise (policies.RESTART_POLICIES)
    stuck_after: int | None  # verified mode: one wrong answer failing this many times ends the request
    budget: int | None  # iterations of all trajectories together
    timeout_ms: int | None  # the deadline, from submission
    priority: int
    stream_every: int

    @property
    def on_demand(self) -> bool:
        return self.breadth_mode == "on_demand"


def plan_job(job: Job, *, model: str, task: Task, defaults: ModelDefaults, caps: Mapping[str, int]) -> Plan:
    """The plan of ``job`` for the served ``model`` (its ``task`` fixes the board): the one function the
    embedded engine and the Redis API node both call. Raises :class:`InvalidParam`."""
    check_job(job, model=model, cells=task.seq_len, vocab=task.vocab_size)
    preset = job.params.preset
    if preset in PRESETS and preset not in defaults.presets:  # an unknown name: resolve says which exist
        takes = ", ".join(repr(p) for p in defaults.presets) or "none"
        raise InvalidParam(
            "preset",
            f"preset {preset!r} does not fit model {model!r}: the presets it takes are {takes} (its config.json's "
            f"inference.presets, for a model trained for them); set the fields you want instead",
        )
    return resolve(job.params, defaults, caps)


def resolve(params: SolveParams, defaults: ModelDefaults, caps: Mapping[str, int], seed: int | None = None) -> Plan:
    """The plan of a request: each field from the request, else its preset, else the model folder, else
    its declared default. Raises :class:`InvalidParam` naming the first field outside its limits.
    ``seed``: drawn at random when neither the request nor this argument gives one."""
    check_params(params, caps)  # the preset's name first: it must be one
    merged = params.with_preset()
    if params.preset is not None:
        check_params(merged, caps)  # a preset's values obey the caps too
    specs = field_specs()

    def value(name: str) -> Any:
        given = getattr(merged, name)
        if given is not None:
            return given
        return getattr(defaults, name) if hasattr(defaults, name) else specs[name].default

    breadth, verify, breadth_mode = value("breadth"), value("verify"), value("breadth_mode")
    depth, budget = restart_schedule(defaults, verify, merged.depth, merged.budget, breadth, caps)
    if merged.stuck_after is not None and not verify:
        raise InvalidParam("stuck_after", "stuck_after counts failed answers, so it needs verified mode (verify: true)")
    quorum = merged.quorum
    if quorum is None and breadth_mode == "on_demand":
        quorum = min(ON_DEMAND_QUORUM, breadth)
    if quorum is not None and quorum > breadth:
        raise InvalidParam("quorum", f"quorum must be between 1 and the breadth ({breadth}), got {quorum}")
    # the trajectories that start at once (on demand: a quorum's worth) need an iteration each, or some never
    # run and the answer's agreement counts only those that did
    starting = quorum if breadth_mode == "on_demand" and quorum is not None else breadth
    if budget is not None and budget < starting:
        source = "" if merged.budget is not None else " (the model's verify_budget)" if defaults.verify_budget else ""
        which = f"breadth {breadth}" if starting == breadth else f"the quorum of breadth on demand, {quorum}"
        raise InvalidParam(
            "budget",
            f"budget {budget}{source} is less than the {starting} trajectories that start ({which}): each needs at "
            f"least one iteration; give a budget of at least {starting}, or fewer trajectories",
        )
    return Plan(
        depth=int(depth),
        breadth=breadth,
        breadth_mode=breadth_mode,
        quorum=quorum,
        noise=float(value("noise")),
        seed=merged.seed if merged.seed is not None else seed if seed is not None else secrets.randbits(63),
        aggregate=value("aggregate"),
        halt=value("halt"),
        verify=verify,
        restart=value("restart"),
        stuck_after=value("stuck_after") if verify else None,
        budget=budget,
        timeout_ms=merged.timeout_ms,
        priority=value("priority"),
        stream_every=value("stream_every"),
    )


def restart_schedule(
    defaults: ModelDefaults, verify: bool, depth: int | None, budget: int | None, breadth: int, caps: Mapping[str, int]
) -> tuple[int, int | None]:
    """Each trajectory's iteration cap and the request's budget. Verified mode without them follows the
    model's restart schedule: ``verify_depth`` iterations a trajectory, ``verify_budget`` (else
    ``VERIFY_BUDGET_DEPTHS`` x depth x breadth, capped) in all."""
    depth = depth or (verify and defaults.verify_depth) or defaults.depth
    if budget is None and verify:
        budget = min(int(defaults.verify_budget or VERIFY_BUDGET_DEPTHS * depth * breadth), caps["budget"])
    return depth, budget
