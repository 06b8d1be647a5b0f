"""Solving in-process, without a server: the serving engine, stepped in this thread.

:func:`offline_engine` builds the engine a model folder gets from ``eqr serve`` (its defaults, its
caps raised to what offline work needs); :func:`run_jobs` steps it until every job has its result.
A job here is computed exactly as the same request sent to a server (every request field, the same
seeds): the same answer and iteration counts. This module never talks to the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eqr.model.network import EqRNetwork
from eqr.model.tasks.base import Task
from eqr.server.engine import Engine, EngineConfig, Job, SolveParams, SolveResult

MAX_CAP = 1 << 20  # offline work is the caller's own: the serving caps do not apply


def offline_engine(
    model: EqRNetwork,
    task: Task,
    meta: Mapping[str, Any],
    slots: int = 256,
    name: str = "model",
    scheduler: str = "fair",
) -> Engine:
    """The engine of a loaded model folder (``meta``: its config.json), ``slots`` trajectories a step;
    ``name``: the model's, as a server would name it (its folder's name), for results and messages;
    ``scheduler``: ``fair`` as served, or ``fcfs`` (no work ahead of need, so each request's compute is
    its own whatever else shares the pool: what an evaluation measures)."""
    config = EngineConfig(
        slots=slots, max_queue=MAX_CAP, max_depth=MAX_CAP, max_breadth=MAX_CAP, max_budget=MAX_CAP, scheduler=scheduler
    )
    return Engine(model, config, model_name=name, task=task, defaults=meta.get("inference"))


def run_jobs(engine: Engine, jobs: Sequence[Job], progress: Callable[[int], None] | None = None) -> list[SolveResult]:
    """Submit ``jobs`` and step ``engine`` here until each has its result (in the jobs' order);
    ``progress`` is told how many finished after each step."""
    futures = [engine.submit(job) for job in jobs]
    finished = 0
    while finished < len(futures):
        engine.step()
        done = sum(f.done() for f in futures)
        if progress is not None and done > finished:
            progress(done - finished)
        finished = done
    return [f.result() for f in futures]


def solve_offline(
    model: EqRNetwork,
    task: Task,
    meta: Mapping[str, Any],
    tokens: Sequence[int],
    params: SolveParams,
    *,
    name: str = "model",
    form: str = "",
) -> SolveResult:
    """One puzzle (``task``'s tokens, written in ``form``) with the request fields ``params``, as a server
    serving the model as ``name`` would answer it."""
    engine = offline_engine(model, task, meta, slots=min(256, max(1, params.with_preset().breadth or 1)), name=name)
    return run_jobs(engine, [Job([int(t) for t in tokens], params, model=name, form=form)])[0]
