"""The request fields' contract: one declaration (``SolveParams``), and every field reaches the engine's
plan through the HTTP API, through the SDK and from the command line.

``VALUES`` sets every declared field to a value no default gives, so a field whose forwarding is lost
anywhere (the API's options, the job, the SDK's options, the plan's resolution) fails here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import httpx
import pytest

from eqr.model.aggregate import AGGREGATES
from eqr.server.api import create_app
from eqr.server.api.schemas import SolveOptions
from eqr.server.cli import build_parser
from eqr.server.engine import Engine, SolveParams
from eqr.server.engine.plan import Plan
from eqr.server.jobs import PRESETS, field_specs
from eqr_client import AsyncClient
from eqr_client import _protocol as sdk
from tests.server.api.conftest import PUZZLE, make_settings, serving

# every field, none at its default; the preset's own values are all overridden, so only its name shows
VALUES: dict[str, Any] = {
    "preset": "paper",
    "depth": 5,
    "breadth": 3,
    "aggregate": "vote",
    "quorum": 3,
    "noise": 0.25,
    "seed": 11,
    "timeout_ms": 60_000,
    "priority": 3,
    "halt": "q_halt",
    "stream_every": 2,
    "breadth_mode": "on_demand",
    "verify": True,
    "restart": "renoise",
    "stuck_after": 3,
    "budget": 40,
}


def test_every_declared_field_has_a_value_here_and_a_place_in_the_plan():
    assert list(VALUES) == list(field_specs())
    plan_fields = {f.name for f in dataclasses.fields(Plan)}
    assert set(field_specs()) - plan_fields == {"preset"}  # expanded by the resolution


def test_the_api_schema_and_the_sdk_follow_the_declaration():
    specs = field_specs()
    assert set(SolveOptions.model_fields) == {*specs, "model"}
    hints = typing.get_type_hints(sdk.SolveOptions)
    assert set(hints) == {*specs, "model"} and {*specs, "model"} == sdk.OPTION_NAMES
    for name, spec in specs.items():
        hint = hints[name]
        if spec.choices is not None:
            assert typing.get_origin(hint) is typing.Literal and set(typing.get_args(hint)) == set(spec.choices), name
        else:
            assert hint is spec.kind, name
    assert specs["preset"].choices == tuple(PRESETS) and specs["aggregate"].choices == AGGREGATES


def test_every_field_has_a_flag_in_eqr_solve_and_eqr_eval():
    parser = build_parser()
    for command in ("solve", "eval"):
        sub = parser._subparsers._group_actions[0].choices[command]
        assert set(field_specs()) <= {a.dest for a in sub._actions}, command


@pytest.fixture
def app(paper_model_dir):
    """A model folder that takes the ``paper`` preset, which ``VALUES`` names."""
    return create_app(make_settings(paper_model_dir))


@pytest.fixture
def plans(monkeypatch) -> list[tuple[SolveParams, Plan]]:
    """The params and plan of every job the engines of this test resolve."""
    seen: list[tuple[SolveParams, Plan]] = []
    resolve = Engine.plan

    def spy(self, job):
        plan = resolve(self, job)
        seen.append((job.params, plan))
        return plan

    monkeypatch.setattr(Engine, "plan", spy)
    return seen


def assert_reached_the_engine(plans: list[tuple[SolveParams, Plan]]) -> None:
    (params, plan), *_ = plans
    assert params == SolveParams(**VALUES)
    for name, value in VALUES.items():
        if name != "preset":
            assert getattr(plan, name) == value, name


async def test_every_field_reaches_the_engine_through_the_api(app, plans):
    async with serving(app) as client:
        r = await client.post("/v1/solve", json={"puzzle": PUZZLE, **VALUES})
    assert r.status_code == 200, r.text
    assert_reached_the_engine(plans)


async def test_every_field_reaches_the_engine_through_the_sdk(app, plans):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://eqr.test", transport=transport, retry=False) as client:
            await client.solve(PUZZLE, **VALUES)
    assert_reached_the_engine(plans)
