"""Offline evaluation grid: metric functions on hand-built rollouts, the grid on a tiny model, the CLI."""

import json

import numpy as np
import pytest
import torch

from eqr.kernels import rng
from eqr.model.checkpoint import load_model, save_model
from eqr.model.config import EqRConfig
from eqr.model.network import EqRNetwork
from eqr.model.tasks.sudoku import SudokuTask, parse_puzzle, read_csv, to_tokens
from eqr.offline.evaluate import RECORD_KEYS, accuracy, cell_record, evaluate_file, iteration_stats, label_lines
from eqr.offline.policies import Policy, grid
from eqr.offline.solve import solve_offline
from eqr.server.cli import main
from eqr.server.engine import SolveParams, SolveResult, Status

TINY = EqRConfig(hidden_size=16, expansion=2.0, multiple_of=16, L_layers=1, H_cycles=1, L_cycles=1, halt_max_steps=4)
SOLUTION = "417369825632158947958724316825437169791586432346912758289643571573291684164875293"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def save_tiny_model(path, inference=None):
    """A random tiny network in a model folder; tests never touch the bundled model."""
    torch.manual_seed(0)
    return save_model(path, EqRNetwork(TINY), {"inference": inference or {"depth": 3, "noise": 0.1}})


SUDOKU = SudokuTask()


def blanked(step: int) -> str:
    return "".join("." if i % step == 0 else ch for i, ch in enumerate(SOLUTION))


# -- metric computation on hand-built results ---------------------------------------------------

LABELS = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
RIGHT0, WRONG0 = [1, 2, 3, 4], [1, 2, 3, 9]  # puzzle 0: wrong answer has 3/4 cells right
RIGHT1, WRONG1 = [5, 6, 7, 8], [5, 6, 0, 0]  # puzzle 1: wrong answer has 2/4 cells right


def result(answer, iterations, converged_at):
    return SolveResult("r", Status.CONVERGED, answer, None, iterations, converged_at, 1.0, 0.1, 0.0, 0.0)


def test_cell_record_hand_built():
    results = [result(WRONG0, [2, 5, 1], 1), result(RIGHT1, [3, 9], None)]
    r = cell_record(results, LABELS, Policy("q", True), depth=8, breadth=3, rule="vote", data="x.csv")
    assert tuple(r) == RECORD_KEYS and (r["data"], r["puzzles"], r["depth"], r["breadth"]) == ("x.csv", 2, 8, 3)
    assert (r["policy"], r["adaptive"]) == ("q", True)
    assert (r["exact_accuracy"], r["cell_accuracy"]) == (0.5, 7 / 8)
    # one answer settled at 1, the other never: it counts its depth; every iteration of every trajectory is spent
    assert (r["mean_iterations"], r["p90_iterations"], r["iterations_spent"]) == (4.5, 8.0, 10.0)


def test_accuracy_and_iteration_stats():
    assert accuracy(np.array([[1, 2], [3, 0]]), np.array([[1, 2], [3, 4]])) == (0.5, 0.75)
    settled = [1, 1, 1, 1, 2, 3, 4, 5, 6, 7]
    results = [result(RIGHT0, [s + 3, 2], s) for s in settled]
    assert iteration_stats(results, 100) == (pytest.approx(3.1), 6.0, pytest.approx(8.1))  # p90: the 9th of 10
    unsettled = [result(RIGHT0, [4], None)] * 10
    assert iteration_stats(unsettled, 4) == (4.0, 4.0, 4.0)  # never converged: its depth


def test_trajectory_seeds_depend_on_seed_puzzle_and_index_only():
    puzzle = rng.puzzle_key(to_tokens(parse_puzzle(blanked(3))))
    wide = rng.trajectory_seeds(7, puzzle, 16)
    assert wide[:4] == rng.trajectory_seeds(7, puzzle, 4)  # breadth b is a prefix of any wider run
    assert len(set(wide)) == 16 and all(0 <= s < 2**63 for s in wide)  # distinct, fit an int64 tensor
    assert not set(rng.trajectory_seeds(8, puzzle, 16)) & set(wide)  # another seed
    other = rng.puzzle_key(to_tokens(parse_puzzle(blanked(4))))
    assert not set(rng.trajectory_seeds(7, other, 16)) & set(wide)  # another puzzle: its own latents


def test_an_evaluation_seeds_each_puzzle_as_a_request_for_it(model_dir, csv_file):
    """Breadth b of puzzle i in an evaluation seeded s runs what ``eqr solve --seed s`` runs for it."""
    model, meta = load_model(model_dir)
    puzzles, solutions = read_csv(str(csv_file))
    kw = {"params": SolveParams(noise=0.1, seed=5), "batch_size": 4}
    (record,) = evaluate_file(model, meta, csv_file, SUDOKU, policies=grid([3], [2], ["vote"]), **kw)
    params = SolveParams(depth=3, breadth=2, aggregate="vote", noise=0.1, seed=5)
    offline = [solve_offline(model, SUDOKU, meta, to_tokens(p), params).answer for p in puzzles]
    cells = np.mean([np.mean(np.asarray(a) == to_tokens(sol)) for a, sol in zip(offline, solutions, strict=True)])
    assert record["cell_accuracy"] == pytest.approx(cells, abs=1e-6) and 0 < cells < 1  # one cell is 1/243


# -- the grid on a tiny model ------------------------------------------------------------------


def test_evaluate_file_grid_and_breadth_prefix(model_dir, csv_file):
    from eqr.model.checkpoint import load_model

    model, meta = load_model(model_dir)
    kw = {"params": SolveParams(noise=0.1, seed=3), "batch_size": 4}
    rules = ["converged", "vote"]
    records = evaluate_file(model, meta, csv_file, SUDOKU, policies=grid([1, 3], [1, 2], rules), **kw)
    assert len(records) == 2 * 2 * 2
    for r in records:
        assert tuple(r) == RECORD_KEYS and r["puzzles"] == 3 and r["data"] == csv_file.name  # never the absolute path
        assert 0.0 <= r["exact_accuracy"] <= r["cell_accuracy"] <= 1.0
        assert 1.0 <= r["mean_iterations"] <= r["p90_iterations"] <= r["depth"]
        assert r["mean_iterations"] <= r["iterations_spent"] <= r["depth"] * r["breadth"]
    # breadth 1 of a breadth-2 run is the same trajectory as a breadth-1 run, and --limit keeps trajectories
    narrow = evaluate_file(model, meta, csv_file, SUDOKU, policies=grid([1, 3], [1], rules), **kw)
    assert narrow == [r for r in records if r["breadth"] == 1]
    limited = evaluate_file(model, meta, csv_file, SUDOKU, limit=2, policies=grid([1, 3], [1], rules), **kw)
    assert len(limited) == 4 and limited[0]["puzzles"] == 2


# -- CLI -----------------------------------------------------------------------------------------


def test_eval_cli_writes_table_json_and_png(model_dir, csv_file, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    argv = ["eval", "--model", str(model_dir), "--data", str(csv_file), str(csv_file), "--depth", "1,2"]
    assert main([*argv, "--breadth", "1,2", "--aggregate", "vote", "--limit", "2", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "exact" in stdout and "tiny.csv" in stdout
    records = json.loads(out.read_text())
    assert len(records) == 2 * (2 * 2 * 1) and {r["aggregate"] for r in records} == {"vote"}
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC

    plot = tmp_path / "custom.png"
    assert main([*argv, "--breadth", "1", "--limit", "1", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_eval_cli_errors(model_dir, csv_file, tmp_path, capsys):
    base = ["eval", "--model", str(model_dir)]
    assert main([*base, "--data", str(tmp_path / "nope.csv")]) == 2
    assert "not found" in capsys.readouterr().err

    for flag, value, message in [
        ("--depth", "1,x", "comma-separated positive integers"),
        ("--breadth", "0", "comma-separated positive integers"),
        ("--aggregate", "best", "unknown aggregate rule"),
    ]:
        with pytest.raises(SystemExit) as exc:
            main([*base, "--data", str(csv_file), flag, value])
        assert exc.value.code == 2 and message in capsys.readouterr().err

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{'55' + SOLUTION[2:]},{SOLUTION}\n")
    assert main([*base, "--data", str(bad), "--depth", "1", "--breadth", "1"]) == 2
    assert "conflicting givens" in capsys.readouterr().err

    assert main(["eval", "--model", str(tmp_path), "--data", str(csv_file)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_frontier_labels_of_nearby_points_go_on_separate_lines():
    # two policies at about the same cost and accuracy, a third just as accurate but 10x dearer, one apart
    points = [(157.0, 77.5), (218.0, 77.5), (1570.0, 77.5), (234.0, 78.3), (20.0, 64.2)]
    assert label_lines(points) == [0, 1, 0, 2, 0]
    assert label_lines([(1.0, 0.0), (0.0, 0.0)]) == [0, 1]  # no iterations at all: no log of zero
