"""Offline solving: the serving engine in-process (early stop, what a converged trajectory answers), and
the ``eqr solve`` CLI."""

import dataclasses
import json

import pytest
import torch

from eqr.kernels import rng
from eqr.model.checkpoint import load_model
from eqr.model.convergence import ConvergenceRule
from eqr.model.tasks.sudoku import BLANK_ID, SudokuTask, format_board, parse_puzzle, to_tokens
from eqr.offline.solve import offline_engine, run_jobs, solve_offline
from eqr.server.cli import main
from eqr.server.engine import Job, SolveParams
from tests.offline.test_evaluate import SOLUTION, blanked, save_tiny_model

PUZZLE = blanked(2)
SUDOKU = SudokuTask()
TOKENS = SUDOKU.encode(PUZZLE)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), {"depth": 3, "noise": 0.1, "window": 2, "tol": 0.5})


def test_the_engine_takes_its_defaults_from_the_model_folder(model_dir):
    model, meta = load_model(model_dir)
    d = offline_engine(model, SUDOKU, meta).defaults
    assert (d.depth, d.noise, d.window, d.tol) == (3, 0.1, 2, 0.5)
    bare = offline_engine(model, SUDOKU, {}).defaults
    rule = ConvergenceRule()
    assert (bare.depth, bare.noise, bare.window, bare.tol) == (4, model.cfg.noise_scale, rule.window, rule.tol)


def test_a_solve_is_the_same_alone_and_batched(model_dir):
    """``solve_offline`` and a batch of jobs on one engine run the very same trajectories."""
    model, meta = load_model(model_dir)
    params = SolveParams(depth=4, breadth=3, noise=0.1, seed=5, aggregate="converged")
    alone = solve_offline(model, SUDOKU, meta, TOKENS, params)
    others = [Job([int(t) for t in SUDOKU.encode(blanked(k))], dataclasses.replace(params, seed=k)) for k in (3, 5)]
    batched = run_jobs(offline_engine(model, SUDOKU, meta, slots=4), [*others, Job([int(t) for t in TOKENS], params)])
    assert (alone.answer, alone.iterations, alone.convergence_score) == (
        batched[-1].answer,
        batched[-1].iterations,
        batched[-1].convergence_score,
    )
    assert alone.iterations == [4, 4, 4] and alone.status.value == "max_iterations"  # random weights: no settling


def test_solve_stops_once_every_trajectory_converged(model_dir):
    model, meta = load_model(model_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # constant logits: the prediction never changes
    meta = {"inference": {"window": 2, "tol": float("inf"), "noise": 0.0}}
    result = solve_offline(model, SUDOKU, meta, TOKENS, SolveParams(depth=50, breadth=2, aggregate="vote", seed=0))
    # iteration 1 has nothing to compare with; iterations 2 and 3 are unchanged -> the rule fires at 3,
    # and the answer it confirms appeared at iteration 1
    assert (result.iterations, result.iterations_to_convergence, result.status.value) == ([3, 3], 1, "converged")
    assert result.agreement == 1.0 and not result.valid


def test_a_converged_trajectory_answers_the_board_it_converged_on(model_dir, monkeypatch):
    monkeypatch.setenv("EQR_CPU_FAST", "0")  # the engine then calls model.iterate, scripted below
    model, _ = load_model(model_dir)
    real = model.iterate

    first = rng.trajectory_seed(0, rng.puzzle_key(to_tokens(parse_puzzle(PUZZLE))), 0)

    def scripted(batch):
        out = real(batch)
        board = torch.empty_like(out.pred)
        for row, (seed, steps) in enumerate(zip(batch.seeds.tolist(), batch.steps.tolist(), strict=True)):
            it = steps + 1
            # trajectory 0: stable until 3, then moves on; trajectory 1 never settles
            board[row] = (3 if it <= 3 else 4) if seed == first else it % 5 + 2
        change = (board != batch.prev_pred).sum(1)
        return dataclasses.replace(out, pred=board, pred_change=change, residual=torch.zeros(batch.size))

    model.iterate = scripted
    meta = {"inference": {"window": 2, "tol": float("inf"), "noise": 0.0}}
    result = solve_offline(model, SUDOKU, meta, TOKENS, SolveParams(depth=6, breadth=2, aggregate="vote", seed=0))
    # trajectory 0 converged at iteration 3 on the board of 3s that appeared at 1: that is its answer,
    # as the engine evicted it then, not the board of 4s it would have drifted to afterwards
    assert (result.iterations, result.iterations_to_convergence) == ([3, 6], 1)
    clues_kept = [t if t > BLANK_ID else 3 for t in TOKENS.tolist()]  # its answer keeps the puzzle's clues
    assert result.answer == clues_kept and result.status.value == "converged"


def test_format_board():
    lines = format_board(parse_puzzle(PUZZLE)).splitlines()
    assert len(lines) == 11 and lines[3] == "------+-------+------"
    assert lines[0] == ". 1 . | 3 . 9 | . 2 ."


def test_solve_cli_text_output(model_dir, capsys, monkeypatch):
    monkeypatch.setenv("EQR_MODEL", str(model_dir))  # the default model, without --model
    assert main(["solve", PUZZLE, "--breadth", "2", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 13 and lines[3] == lines[7] == "------+-------+------"
    assert len(lines[11]) == 81 and set(lines[11]) <= set("123456789.")
    assert lines[12].startswith("status: ") and "iterations: " in lines[12] and "valid: no" in lines[12]


def test_solve_cli_json(model_dir, capsys):
    assert main(["solve", PUZZLE, "--model", str(model_dir), "--depth", "2", "--aggregate", "vote", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)  # the HTTP response's shape: the answer as the puzzle's board
    assert doc["model"] == model_dir.name and len(doc["answer"]) == 81 and len(doc["grid"]) == 9
    assert max(doc["iterations"]) <= 2 and len(doc["iterations"]) == 1
    assert doc["status"] in ("converged", "max_iterations") and doc["valid"] is False


def test_solve_cli_refuses_a_preset_the_folder_does_not_take(model_dir, capsys):
    """Offline as on a server: the folder's inference.presets decide, and the message names the model."""
    assert main(["solve", PUZZLE, "--model", str(model_dir), "--preset", "paper"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("eqr solve: --preset: preset 'paper'") and f"model '{model_dir.name}'" in err


@pytest.mark.parametrize(
    ("puzzle", "message"),
    [
        (PUZZLE[:-1], "81 cells, got 80"),
        ("x" + PUZZLE[1:], "bad character 'x' at position 0 (r1c1)"),
        ("55" + SOLUTION[2:], "conflicting givens: r1c1 and r1c2 both hold 5"),
    ],
)
def test_solve_cli_rejects_invalid_puzzles(model_dir, capsys, puzzle, message):
    assert main(["solve", puzzle, "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "invalid puzzle" in err and message in err


def test_solve_cli_missing_model(tmp_path, capsys):
    assert main(["solve", PUZZLE, "--model", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err
