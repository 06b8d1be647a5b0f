"""The named policies and the fraction of the paper protocol's iterations: the list, the pure comparison on
hand-built records, evaluate() on the bundled Sudoku model and ``eqr eval --policies`` on a tiny model,
both with the paper protocol's row shrunk (its 64 x 128 is the one test here that would take minutes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eqr.model.checkpoint import load_model
from eqr.offline.evaluate import evaluate_file
from eqr.offline.policies import grid, named, paper, reaching_reference, reference_line
from eqr.server.cli import main
from eqr.server.engine import SolveParams
from eqr.server.jobs import PRESETS, field_specs
from tests.offline.test_evaluate import PNG_MAGIC, SUDOKU


def record(policy: str, adaptive: bool, solved: int, spent: float, puzzles: int = 40) -> dict:
    return {
        "policy": policy,
        "adaptive": adaptive,
        "exact_accuracy": solved / puzzles,
        "iterations_spent": spent,
        "puzzles": puzzles,
    }


ROOT = Path(__file__).resolve().parents[2]
EASY = ROOT / "benchmarks" / "puzzles" / "easy50.csv"
PAPER = record("paper 64 x 128", False, 20, 4000.0)


# -- the list ------------------------------------------------------------------------------------


def test_the_paper_row_is_the_paper_preset():
    row = next(p for p in named(64, 16) if p.name.startswith("paper"))
    assert dict(row.fields) == PRESETS["paper"] and not row.adaptive
    assert row.name == "paper 64 x 128"
    small = paper(8, 4)  # shrunk for tests: only its size changes, and its name says so
    assert small.name == "paper 8 x 4" and dict(small.fields) == {**PRESETS["paper"], "depth": 8, "breadth": 4}


def test_every_policy_is_request_fields_with_a_unique_name():
    policies = named(64, 16)
    assert len({p.name for p in policies}) == len(policies)
    assert all(set(p.fields) <= set(field_specs()) for p in policies)
    assert [p.name for p in policies if p.adaptive] == [
        "fixed 64 x 16 quorum 3",
        "on demand <= 16, quorum 2",
        "on demand <= 16, quorum 3",
        "verified, budget 1024",
        "verified, budget 2048",
    ]
    assert all(p.fields.get("breadth", 1) <= 16 for p in policies if not p.name.startswith("paper"))
    # a cap under the quorum would be refused by every request: the quorums shrink to fit
    assert all(p.fields.get("quorum", 1) <= 2 for p in named(8, 2))


def test_grid_is_every_cell_depth_major():
    assert [p.name for p in grid([4, 1], [2], ["vote", "converged"])] == [
        "1 x 2 vote",
        "1 x 2 converged",
        "4 x 2 vote",
        "4 x 2 converged",
    ]
    assert not any(p.adaptive for p in grid([1], [1], ["vote"]))


# -- the fraction --------------------------------------------------------------------------------


def test_the_cheapest_adaptive_policy_reaching_the_reference_wins():
    records = [
        PAPER,
        record("fixed 64 x 16 vote", False, 25, 100.0),  # not adaptive: never the answer, however cheap
        record("quorum", True, 20, 900.0),  # the reference's exact accuracy: reaches it, at a higher cost
        record("on demand", True, 21, 600.0),
        record("cheap", True, 18, 50.0),  # two puzzles short: does not
    ]
    best, fraction = reaching_reference(records, PAPER)
    assert best["policy"] == "on demand" and fraction == pytest.approx(0.15)


def test_one_puzzle_short_still_reaches_it_two_do_not():
    one_short = [PAPER, record("a", True, 19, 400.0)]
    assert reaching_reference(one_short, PAPER)[1] == pytest.approx(0.1)
    assert reaching_reference([PAPER, record("a", True, 18, 400.0)], PAPER) is None


def test_a_tie_in_cost_goes_to_the_first_listed():
    records = [PAPER, record("first", True, 30, 500.0), record("second", True, 20, 500.0)]
    assert reaching_reference(records, PAPER)[0]["policy"] == "first"


def test_none_reaches_it():
    records = [PAPER, record("a", True, 10, 100.0), record("b", True, 15, 9000.0), record("fixed", False, 40, 1.0)]
    assert reaching_reference(records, PAPER) is None
    assert reference_line(records, PAPER) == (
        "no adaptive policy reaches paper 64 x 128's accuracy (50.0% at 4000 iterations a puzzle) within one puzzle"
    )


def test_the_line_names_the_policy_and_the_fraction():
    line = reference_line([PAPER, record("on demand", True, 21, 500.0)], PAPER)
    assert line == (
        "best adaptive policy on demand (52.5%) reaches paper 64 x 128's accuracy (50.0% at 4000 iterations a "
        "puzzle) at 0.125 of its iterations (500 a puzzle)"
    )


def test_a_reference_that_spent_nothing_is_refused():
    with pytest.raises(ValueError, match="spent no iterations"):
        reaching_reference([PAPER], {**PAPER, "iterations_spent": 0.0})


# -- through the engine and the CLI, on a tiny model ------------------------------------------------


def test_evaluate_runs_each_policy_as_its_request():
    """On the bundled Sudoku model and three easy puzzles: a record's depth, breadth and rule are what its
    requests resolved to (verified mode: the model's restart schedule), each costs no more than its fields
    allow, and the adaptive ones spend less than the fixed breadth they cap."""
    model, meta = load_model(ROOT / "models" / "sudoku-small")
    policies = named(8, 4, paper(8, 4))
    params = SolveParams(seed=0)
    records = evaluate_file(model, meta, EASY, SUDOKU, limit=3, policies=policies, params=params, batch_size=64)
    assert [r["policy"] for r in records] == [p.name for p in policies]
    by_name = {r["policy"]: r for r in records}
    shrunk = by_name["paper 8 x 4"]
    assert (shrunk["depth"], shrunk["breadth"], shrunk["aggregate"], shrunk["adaptive"]) == (8, 4, "converged", False)
    verified = by_name["verified, budget 128"]
    assert (verified["depth"], verified["breadth"]) == (meta["inference"]["verify_depth"], 1)
    for policy, r in zip(policies, records, strict=True):
        cap = policy.fields.get("budget") or r["depth"] * r["breadth"]
        assert 1 <= r["iterations_spent"] <= cap, policy.name
    fixed = by_name["fixed 8 x 4 vote"]
    assert by_name["on demand <= 4, quorum 2"]["iterations_spent"] < fixed["iterations_spent"]
    assert by_name["fixed 8 x 4 quorum 3"]["iterations_spent"] < fixed["iterations_spent"]


@pytest.fixture
def small_paper(monkeypatch):
    """The paper preset shrunk to 6 x 4 (its 64 x 128 takes a minute even on the tiny model): the CLI's row
    follows the preset, whatever its size."""
    monkeypatch.setitem(PRESETS, "paper", {**PRESETS["paper"], "depth": 6, "breadth": 4})
    return "paper 6 x 4"


def test_eval_cli_policies_table_ends_with_the_fraction_line(model_dir, csv_file, small_paper, tmp_path, capsys):
    out = tmp_path / "policies.json"
    argv = ["eval", "--model", str(model_dir), "--data", str(csv_file), "--policies", "--depth", "4", "--breadth", "4"]
    assert main([*argv, "--limit", "2", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = json.loads(out.read_text())
    assert [r["policy"] for r in records] == [p.name for p in named(4, 4)]
    real = next(r for r in records if r["policy"] == small_paper)
    assert (real["depth"], real["breadth"], real["aggregate"], real["puzzles"]) == (6, 4, "converged", 2)
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC  # the frontier plot
    rows = [line for line in lines if line.startswith("tiny.csv")]
    assert [line.split()[1:3] for line in rows][:2] == [["fixed", "4"], ["fixed", "4"]] and len(rows) == len(records)
    assert any(re.search(r"paper 6 x 4 +6 +4 converged", line) for line in rows)
    assert lines[-1] == reference_line(records, real)
    assert re.fullmatch(
        r"(best adaptive policy .+ at [\d.e-]+ of its iterations \(\d+ a puzzle\))|(no adaptive .+)", lines[-1]
    )


def test_eval_cli_policies_ends_with_a_line_per_data_file(model_dir, csv_file, small_paper, tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text(csv_file.read_text().splitlines()[2] + "\n")
    argv = ["eval", "--model", str(model_dir), "--data", str(csv_file), str(other), "--policies", "--depth", "2"]
    assert main([*argv, "--breadth", "2", "--limit", "1", "--json", str(tmp_path / "two.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = json.loads((tmp_path / "two.json").read_text())
    for line, name in zip(lines[-2:], ("tiny.csv", "other.csv"), strict=True):
        own = [r for r in records if r["data"] == name]
        assert line == f"{name}: " + reference_line(own, next(r for r in own if r["policy"] == small_paper))


def test_eval_cli_policies_refuses_a_grid(model_dir, csv_file, capsys):
    base = ["eval", "--model", str(model_dir), "--data", str(csv_file), "--policies"]
    for extra in (["--depth", "4,8"], ["--breadth", "4,16"], ["--aggregate", "vote"]):
        assert main([*base, *extra]) == 2
        assert "--policies takes one --depth and one --breadth" in capsys.readouterr().err
