"""Maze generator and maze training: unique shortest paths, the length spread, disjoint seeds,
the committed eval sets, and a tiny training run that resumes."""

import json
from pathlib import Path

import numpy as np
import pytest

from eqr.model.checkpoint import load_model
from eqr.model.tasks import maze
from eqr.model.tasks.data import TRAIN_SEED_MIN, MazeSampler, maze_eval_seed
from eqr.model.tasks.mazegen import KINDS, MazeSpec, generate, main
from eqr.model.train import STATE_FILE, train

EVALSETS = Path(__file__).resolve().parents[2] / "evalsets" / "maze"


def _grids(flat: np.ndarray, size: int) -> np.ndarray:
    return flat.reshape(len(flat), size, size)


def test_generated_mazes_have_unique_shortest_paths_of_the_drawn_length():
    spec = MazeSpec(size=11, min_len=2, max_len=30)
    puzzles, solutions, lengths, kinds = generate(300, spec, seed=7)
    for p, s, n in zip(_grids(puzzles, 11), _grids(solutions, 11), lengths, strict=True):
        assert maze.shortest_path_count(p) == 1 and maze.shortest_path_length(p) == n
        assert np.array_equal(maze.solution(p), s) and maze.verify(p, s)
        assert set(np.unique(p)) <= {maze.WALL_ID, maze.OPEN_ID, maze.START_ID, maze.GOAL_ID}
    assert set(kinds.tolist()) == {0, 1}  # both perfect and random-wall mazes
    # the length is drawn uniformly: every third of the range is well represented
    thirds = np.histogram(lengths, bins=3, range=(2, 31))[0]
    assert thirds.min() > 70 and lengths.min() <= 3 and lengths.max() >= 29


def test_perfect_mazes_are_trees_with_even_sides_walled_like_the_paper():
    puzzles, _, _, kinds = generate(20, MazeSpec(size=12, min_len=5, max_len=20, p_perfect=1.0), seed=3)
    assert (kinds == 0).all()
    for p in _grids(puzzles, 12):
        assert (p[-1] == maze.WALL_ID).all() and (p[:, -1] == maze.WALL_ID).all() and (p[0] == maze.WALL_ID).all()
        assert (p[::2, ::2] == maze.WALL_ID).all()  # pillars between rooms
        # a tree: open cells V and open adjacent pairs E satisfy E = V - 1
        open_ = p != maze.WALL_ID
        edges = (open_[1:] & open_[:-1]).sum() + (open_[:, 1:] & open_[:, :-1]).sum()
        assert edges == open_.sum() - 1


def test_generation_is_seeded_and_a_longer_set_extends_a_shorter_one():
    spec = MazeSpec(size=9, min_len=2, max_len=14)
    a, b = generate(40, spec, seed=11), generate(40, spec, seed=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.array_equal(generate(15, spec, seed=11)[0], a[0][:15])
    assert not np.array_equal(generate(40, spec, seed=12)[0], a[0])


def test_impossible_lengths_are_refused():
    with pytest.raises(ValueError, match="unique shortest path of 30 steps"):
        generate(1, MazeSpec(size=3, min_len=30, max_len=30), seed=0)


def test_training_seeds_differ_from_eval_seeds_and_mazes():
    sampler = MazeSampler(MazeSpec(size=11, min_len=2, max_len=30), seed=0)
    seeds = [sampler.next_seed() for _ in range(1000)]
    assert min(seeds) >= TRAIN_SEED_MIN > max(maze_eval_seed(s) for s in range(3, 200)) and len(set(seeds)) == 1000
    eval_puzzles, _, _ = maze.read_jsonl(EVALSETS / "maze11-1000.jsonl")
    train_puzzles, _ = sampler.sample(500, 0.0)
    held_out = {g.tobytes() for g in eval_puzzles}
    assert not any(g.tobytes() in held_out for g in _grids(train_puzzles, 11))
    assert len({g.tobytes() for g in _grids(train_puzzles, 11)}) == 500


def test_committed_eval_sets_are_the_generator_with_their_fixed_seeds(tmp_path):
    for name, size, lo, hi in (("maze11-1000", 11, 2, 30), ("maze30-100", 30, 10, 140)):
        committed = (EVALSETS / f"{name}.jsonl").read_text().splitlines()
        out = tmp_path / f"{name}.jsonl"
        n = 50 if size == 11 else 10
        args = ["--size", str(size), "--n", str(n), "--min-len", str(lo), "--max-len", str(hi)]
        main([*args, "--seed", str(maze_eval_seed(size)), "--out", str(out)])
        assert out.read_text().splitlines() == committed[:n]
        _, _, meta = maze.read_jsonl(EVALSETS / f"{name}.jsonl")
        lengths = [m["length"] for m in meta]
        assert min(lengths) <= lo + 2 and max(lengths) >= hi - 5 and {m["kind"] for m in meta} == set(KINDS)


def test_tiny_maze_training_run_records_the_task_and_resumes(tmp_path):
    config = {
        "name": "tiny-maze",
        "task": "maze",
        "arch": {
            "vocab_size": 6,
            "seq_len": 49,
            "hidden_size": 16,
            "expansion": 2.0,
            "multiple_of": 16,
            "L_layers": 1,
            "H_cycles": 1,
            "L_cycles": 1,
            "halt_max_steps": 2,
        },
        "train": {"batch_size": 8, "max_steps": 4, "warmup_steps": 2, "eval_every": 2, "eval_puzzles": 4, "threads": 1},
        "data": {"size": 7, "min_len": 2, "max_len": 10},
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "model"
    train(path, out, cache_dir=tmp_path / "cache")
    model, meta = load_model(out)
    assert meta["task"] == "maze" and meta["grid"] == {"rows": 7, "cols": 7}
    assert model.cfg.vocab_size == 6 and model.cfg.seq_len == 49
    assert meta["training"]["steps"] == 4 and "generated_maze_depth16" in meta["accuracy"]
    assert (out / STATE_FILE).exists() and (out / "model.safetensors").exists()
    config["train"]["max_steps"] = 6
    path.write_text(json.dumps(config))
    train(path, out, cache_dir=tmp_path / "cache")
    _, meta = load_model(out)
    assert meta["training"]["steps"] == 6 and [h["step"] for h in meta["training"]["history"]] == [2, 4, 6]


def test_a_config_whose_board_does_not_fit_the_mazes_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"task": "maze", "arch": {"vocab_size": 6, "seq_len": 81}, "data": {"size": 7}}))
    with pytest.raises(ValueError, match="seq_len 81 does not fit 7x7 mazes"):
        train(path, tmp_path / "model")
    path.write_text(json.dumps({"task": "chess"}))
    with pytest.raises(ValueError, match="unknown task 'chess'; training supports sudoku, maze"):
        train(path, tmp_path / "model")


def test_the_progress_bar_shows_for_big_batches_or_when_asked(capsys):
    spec = MazeSpec(size=9, min_len=2, max_len=14)
    generate(1001, spec, seed=1)
    assert "mazes 9x9" in capsys.readouterr().err
    generate(1001, spec, seed=1, progress=False)
    generate(10, spec, seed=1)
    assert capsys.readouterr().err == ""
    generate(10, spec, seed=1, progress=True)
    assert "mazes 9x9" in capsys.readouterr().err
