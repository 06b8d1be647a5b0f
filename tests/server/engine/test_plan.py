"""The plan's resolution refuses what could not be computed as asked, naming the field: a budget too small
for the trajectories that must start, a preset the model folder does not take."""

from __future__ import annotations

import dataclasses

import pytest

from eqr.model.checkpoint import INFERENCE_KEYS
from eqr.model.tasks.sudoku import SudokuTask
from eqr.server.engine import InvalidParam, Job, SolveParams
from eqr.server.engine.plan import ModelDefaults, plan_job, resolve
from tests.server.engine.fake import puzzle

CAPS = {"depth": 64, "breadth": 16, "budget": 65_536}


@pytest.mark.parametrize(
    ("params", "starting"),
    [
        (SolveParams(budget=1, breadth=4), 4),  # answered iterations [1, 0, 0, 0] with agreement 1.0
        (SolveParams(budget=3, breadth=4, verify=True), 4),
        (SolveParams(budget=1, breadth=8, breadth_mode="on_demand"), 2),  # its quorum starts: 2
        (SolveParams(budget=2, breadth=8, breadth_mode="on_demand", quorum=3), 3),
    ],
)
def test_a_budget_below_the_trajectories_that_start_is_refused(params: SolveParams, starting: int):
    with pytest.raises(InvalidParam) as info:
        resolve(params, ModelDefaults(depth=8), CAPS)
    assert info.value.field == "budget"
    assert f"budget {params.budget}" in str(info.value) and f"{starting} trajectories" in str(info.value)


def test_a_budget_of_one_iteration_per_starting_trajectory_is_enough():
    assert resolve(SolveParams(budget=4, breadth=4), ModelDefaults(depth=8), CAPS).budget == 4
    # on demand, breadth is a cap: a budget below it (but not below the quorum) bounds how many join
    on_demand = SolveParams(budget=5, breadth=16, breadth_mode="on_demand")
    assert resolve(on_demand, ModelDefaults(depth=8), CAPS).budget == 5


def test_a_model_default_budget_too_small_says_where_it_came_from():
    defaults = ModelDefaults(depth=8, verify=True, verify_budget=3)
    with pytest.raises(InvalidParam, match="the model's verify_budget") as info:
        resolve(SolveParams(breadth=4), defaults, CAPS)
    assert info.value.field == "budget"


def test_a_preset_the_model_does_not_take_is_refused_naming_both():
    """``preset: paper`` on a model folder that does not list it (the bundled Sudoku model, trained at noise
    0.01, got 0 of 30 top95 puzzles with the paper's noise 0.5) is a 422 naming the preset and the model."""
    job = Job(puzzle(1), SolveParams(preset="paper"))
    task = SudokuTask()
    with pytest.raises(InvalidParam) as info:
        plan_job(job, model="sudoku-small", task=task, defaults=ModelDefaults(depth=8), caps=CAPS | {"breadth": 128})
    assert info.value.field == "preset"
    assert "'paper'" in str(info.value) and "'sudoku-small'" in str(info.value)
    assert "inference.presets" in str(info.value)  # how a folder that fits says so
    takes = ModelDefaults(depth=8, presets=("paper",))
    plan = plan_job(job, model="paper-sudoku", task=task, defaults=takes, caps=CAPS | {"breadth": 128})
    assert (plan.breadth, plan.noise, plan.halt) == (128, 0.5, "q_halt")


def test_the_presets_a_model_takes_come_from_its_folder_and_its_card():
    rule = {"depth": 8, "noise": 0.0, "window": 2, "tol": 0.5}
    assert ModelDefaults.from_folder({"presets": ["paper"]}, **rule).presets == ("paper",)
    assert ModelDefaults.from_folder({}, **rule).presets == ()  # a folder that lists none takes none
    card = ModelDefaults.from_card({"presets": ["paper"]}, CAPS)  # a Redis API node reads a worker's card
    assert card.presets == ("paper",)
    with pytest.raises(ValueError, match="presets"):
        ModelDefaults.from_folder({"presets": ["fast"]}, **rule)


def test_a_folder_inference_block_may_hold_each_default_the_engine_reads_from_it():
    """The folder format's key list (what a model folder is checked against) and the defaults a folder
    sets stay one list: a default added here and not there would be refused in every folder."""
    per_request = {"breadth", "halt", "stream_every"}  # no folder sets these: from_folder leaves them be
    assert set(INFERENCE_KEYS) == {f.name for f in dataclasses.fields(ModelDefaults)} - per_request
