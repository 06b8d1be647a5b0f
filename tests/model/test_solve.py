"""Offline solving: early stop, agreement with the fixed-depth rollout, and the ``eqr solve`` CLI."""

import dataclasses
import json

import pytest
import torch

from eqr.kernels import rng
from eqr.model.checkpoint import load_model
from eqr.model.convergence import ConvergenceRule
from eqr.model.solve import inference_defaults, solve_offline
from eqr.model.tasks.sudoku import BLANK_ID, SudokuTask, format_board, parse_puzzle, to_tokens
from eqr.runtime.rollout import rollout
from eqr.server.cli import main
from tests.model.test_evaluate import SOLUTION, blanked, save_tiny_model

PUZZLE = blanked(2)
SUDOKU = SudokuTask()
TOKENS = SUDOKU.encode(PUZZLE)
NEVER = ConvergenceRule(window=3, tol=0.0)  # the residual is never < 0: runs the whole depth


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), {"depth": 3, "noise": 0.1, "window": 2, "tol": 0.5})


def test_inference_defaults_come_from_the_model_folder(model_dir):
    model, meta = load_model(model_dir)
    d = inference_defaults(model, meta)
    assert (d.depth, d.noise, d.rule) == (3, 0.1, ConvergenceRule(window=2, tol=0.5))
    bare = inference_defaults(model, {})
    assert (bare.depth, bare.noise, bare.rule) == (4, model.cfg.noise_scale, ConvergenceRule())


def test_full_depth_solve_matches_the_rollout(model_dir):
    model, _ = load_model(model_dir)
    result = solve_offline(model, SUDOKU, TOKENS, depth=4, breadth=3, noise=0.1, seed=5, rule=NEVER)
    assert result.iterations == [4, 4, 4] and result.status == "max_iterations" and result.converged_at is None
    tokens = torch.from_numpy(TOKENS).repeat(3, 1)
    seeds = rng.trajectory_seeds(5, rng.puzzle_key(tokens[0]), 3)
    r = rollout(model, tokens, seeds, 4, 0.1, rule=NEVER, allowed=SUDOKU.allowed)  # answers read as solve reads them
    best = int(r.scores[-1].argmin())
    assert result.trajectory == best
    assert result.answer == r.preds[-1, best].tolist()
    assert result.convergence_score == pytest.approx(float(r.scores[-1, best]))


def test_solve_stops_once_every_trajectory_converged(model_dir):
    model, _ = load_model(model_dir)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # constant logits: the prediction never changes
    rule = ConvergenceRule(window=2, tol=float("inf"))
    result = solve_offline(model, SUDOKU, TOKENS, depth=50, breadth=2, rule_name="vote", rule=rule)
    # iteration 1 has nothing to compare with; iterations 2 and 3 are unchanged -> the rule fires at 3,
    # and the answer it confirms appeared at iteration 1
    assert (result.iterations, result.converged_at, result.status) == ([3, 3], 1, "converged")
    assert result.converged_trajectories == 2 and result.agreement == 1.0 and not result.valid
    tokens = torch.from_numpy(to_tokens(parse_puzzle(PUZZLE))).repeat(2, 1)
    r = rollout(model, tokens, rng.trajectory_seeds(0, rng.puzzle_key(tokens[0]), 2), 10, 0.0, rule=rule)
    assert r.converged_at.tolist() == [1, 1] and r.detected_at.tolist() == [3, 3]


def test_a_converged_trajectory_answers_the_board_it_converged_on(model_dir, monkeypatch):
    monkeypatch.setenv("EQR_CPU_FAST", "0")  # rollout() then calls model.iterate, scripted below
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
    rule = ConvergenceRule(window=2, tol=float("inf"))
    result = solve_offline(model, SUDOKU, TOKENS, depth=6, breadth=2, rule_name="vote", rule=rule)
    # trajectory 0 converged at iteration 3 on the board of 3s that appeared at 1: that is its answer,
    # as the engine would have evicted it then, not the board of 4s it drifted to afterwards
    assert (result.iterations, result.trajectory, result.converged_at) == ([3, 6], 0, 1)
    clues_kept = [t if t > BLANK_ID else 3 for t in TOKENS.tolist()]  # its answer keeps the puzzle's clues
    assert result.answer == clues_kept and result.status == "converged" and result.converged_trajectories == 1
    # evaluation's rollout answers the same way at every snapshot depth (here reading raw predictions)
    tokens = torch.from_numpy(to_tokens(parse_puzzle(PUZZLE))).repeat(2, 1)
    seeds = rng.trajectory_seeds(0, rng.puzzle_key(tokens[0]), 2)
    r = rollout(model, tokens, seeds, 6, 0.0, snapshots=[2, 6], rule=rule)
    assert r.preds[:, 0].tolist() == [[3] * 81, [3] * 81]  # at 2 not converged yet, at 6 frozen since 3
    assert r.preds[1, 1].tolist() == [6 % 5 + 2] * 81  # the unsettled one answers its last board
    assert (r.converged_at.tolist(), r.detected_at.tolist()) == ([1, 7], [3, 7])


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
    doc = json.loads(capsys.readouterr().out)
    assert doc["puzzle"] == PUZZLE and len(doc["solution"]) == 81 and max(doc["iterations"]) <= 2
    assert doc["status"] in ("converged", "max_iterations") and doc["valid"] is False and doc["breadth"] == 1


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
