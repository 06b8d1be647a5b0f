"""Maze generator and maze training: unique shortest paths, the length spread, every kind of maze,
disjoint seeds, the committed eval sets, and tiny training runs that resume, fine-tune, widen or refuse."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqr.model.checkpoint import load_model
from eqr.model.tasks import maze
from eqr.model.tasks.data import TRAIN_SEED_MIN, MazeMix, MazeSampler, maze_eval_seed
from eqr.model.tasks.mazegen import KINDS, MazeSpec, generate, kind_spec, main
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


def _open_edges(p: np.ndarray) -> tuple[int, int]:
    """Open cells V and open adjacent pairs E of a maze grid (a tree has E = V - 1)."""
    open_ = p != maze.WALL_ID
    return int(open_.sum()), int((open_[1:] & open_[:-1]).sum() + (open_[:, 1:] & open_[:, :-1]).sum())


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_unique_shortest_paths_over_its_whole_length_range(kind):
    spec = kind_spec(kind, 11)
    puzzles, solutions, lengths, kinds = generate(200, spec, seed=4)
    assert (kinds == KINDS.index(kind)).all() and spec.min_len == 2 and spec.max_len >= 26
    for p, s, n in zip(_grids(puzzles, 11), _grids(solutions, 11), lengths, strict=True):
        assert maze.shortest_path_count(p) == 1 and maze.shortest_path_length(p) == n and maze.verify(p, s)
    assert lengths.min() <= 3 and lengths.max() >= spec.max_len - 2


def test_braided_mazes_are_perfect_mazes_with_one_to_five_loops():
    puzzles, _, _, _ = generate(100, kind_spec("braided", 11), seed=2)
    loops = []
    for p in _grids(puzzles, 11):
        v, e = _open_edges(p)
        loops.append(e - (v - 1))  # each wall knocked through closes one loop
        assert (p[::2, ::2] == maze.WALL_ID).all() and (p[0] == maze.WALL_ID).all()  # pillars and frame stay
    assert set(loops) == {1, 2, 3, 4, 5}


def test_rooms_are_walled_open_areas_and_random_walls_span_their_densities():
    rooms, _, _, _ = generate(100, kind_spec("rooms", 11), seed=2)
    rooms = _grids(rooms, 11) != maze.WALL_ID
    open_square = rooms[:, 1:, 1:] & rooms[:, :-1, 1:] & rooms[:, 1:, :-1] & rooms[:, :-1, :-1]
    assert open_square.any(axis=(1, 2)).mean() > 0.8  # a perfect maze never has a 2x2 open square
    assert not rooms[:, 0].any() and not rooms[:, :, -1].any()
    walls, _, _, _ = generate(300, kind_spec("random", 11), seed=2)
    density = (_grids(walls, 11) == maze.WALL_ID).mean(axis=(1, 2))
    assert density.min() < 0.05 and density.max() > 0.35  # from no walls at all to dense obstacles


def test_perfect_mazes_are_trees_with_even_sides_walled_like_the_paper():
    puzzles, _, _, kinds = generate(20, MazeSpec(size=12, min_len=5, max_len=20, p_perfect=1.0), seed=3)
    assert (kinds == 0).all()
    for p in _grids(puzzles, 12):
        assert (p[-1] == maze.WALL_ID).all() and (p[:, -1] == maze.WALL_ID).all() and (p[0] == maze.WALL_ID).all()
        assert (p[::2, ::2] == maze.WALL_ID).all()  # pillars between rooms
        v, e = _open_edges(p)
        assert e == v - 1  # a tree


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
    sampler = MazeSampler(MazeMix(size=11), seed=0)
    seeds = [sampler.next_seed() for _ in range(1000)]
    eval_seeds = [maze_eval_seed(s, k, draw) for s in range(3, 200) for k in (None, *KINDS) for draw in (0, 1)]
    assert min(seeds) >= TRAIN_SEED_MIN > max(eval_seeds) and len(set(seeds)) == 1000
    assert len(set(eval_seeds)) == len(eval_seeds)  # every size and kind has its own held-out stream
    eval_puzzles = [maze.read_jsonl(path)[0] for path in EVALSETS.rglob("maze11-*.jsonl")]
    train_puzzles, _ = sampler.sample(500, 0.0)
    held_out = {g.tobytes() for puzzles in eval_puzzles for g in puzzles}
    assert not any(g.tobytes() in held_out for g in _grids(train_puzzles, 11))
    assert len({g.tobytes() for g in _grids(train_puzzles, 11)}) == 500


def test_the_training_mix_draws_every_kind_in_its_share():
    counts = {}
    sampler = MazeSampler(MazeMix(size=9, kinds={"braided": 3.0, "rooms": 1.0}), seed=1)
    puzzles, solutions = sampler.sample(400, 0.0)
    for p in _grids(puzzles, 9):
        v, e = _open_edges(p)
        kind = "braided" if (p[::2, ::2] == maze.WALL_ID).all() and 1 <= e - v + 1 <= 5 else "rooms"
        counts[kind] = counts.get(kind, 0) + 1
    assert 250 < counts["braided"] < 350 and all(
        maze.verify(p, s) for p, s in zip(_grids(puzzles, 9), _grids(solutions, 9), strict=True)
    )
    with pytest.raises(ValueError, match="unknown maze kind 'spiral'"):
        MazeMix(kinds={"spiral": 1.0})


def test_a_mix_entry_with_a_length_band_draws_only_those_lengths():
    mix = MazeMix(size=11, kinds={"random": 1.0, "random:14-20": 1.0})
    puzzles, solutions = MazeSampler(mix, seed=2).sample(300, 0.0)
    lengths = [maze.shortest_path_length(p) for p in _grids(puzzles, 11)]
    assert sum(14 <= n <= 20 for n in lengths) > 170  # the band's half and 7/25 of the rest, ~192 (uniform: ~84)
    assert min(lengths) < 14 and max(lengths) <= 26 and mix.base_kinds == ["random"]
    assert all(maze.verify(p, s) for p, s in zip(_grids(puzzles, 11), _grids(solutions, 11), strict=True))
    with pytest.raises(ValueError, match="random path lengths at 11x11 lie in 2-26"):
        MazeMix(kinds={"random:20-40": 1.0})
    with pytest.raises(ValueError, match="written kind:lo-hi"):
        MazeMix(kinds={"random:long": 1.0})


@pytest.mark.parametrize("draw, name, n", [(0, "maze11-{}-300.jsonl", 300), (1, "confirm/maze11-{}-1000.jsonl", 1000)])
def test_committed_per_kind_eval_sets_are_the_generator_with_their_fixed_seeds(tmp_path, draw, name, n):
    for kind in KINDS:
        path = EVALSETS / name.format(kind)
        committed = path.read_text().splitlines()
        out = tmp_path / f"{kind}.jsonl"
        seed = maze_eval_seed(11, kind, draw)
        main(["--size", "11", "--kind", kind, "--n", "40", "--seed", str(seed), "--out", str(out)])
        assert out.read_text().splitlines() == committed[:40] and len(committed) == n
        _, _, meta = maze.read_jsonl(path)
        assert {m["kind"] for m in meta} == {kind}


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
        assert min(lengths) <= lo + 2 and max(lengths) >= hi - 5 and {m["kind"] for m in meta} == {"perfect", "random"}


def _tiny_config() -> dict:
    """A 7x7 maze run small enough to train in a second: the start of every training test here."""
    return {
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
        "train": {
            "batch_size": 8,
            "max_steps": 4,
            "warmup_steps": 2,
            "eval_every": 2,
            "eval_puzzles": 4,
            "threads": 1,
            "eval_depth": 3,
        },
        "data": {"size": 7, "kinds": {"perfect": 1.0, "rooms": 1.0}},
    }


def _train(config: dict, folder: Path, out: Path) -> Path:
    """Writes the config next to the run and trains it (the data cache shared within the folder)."""
    path = folder / f"{out.name}.json"
    path.write_text(json.dumps(config))
    train(path, out, cache_dir=folder / "cache")
    return out


@pytest.fixture(scope="module")
def tiny_start(tmp_path_factory) -> Path:
    """A tiny maze model trained 6 steps, the start the fine-tune tests widen and tune."""
    folder = tmp_path_factory.mktemp("tiny-start")
    config = _tiny_config()
    config["train"]["max_steps"] = 6
    return _train(config, folder, folder / "model")


def _fine_tune(start: Path) -> dict:
    """One step at lr 0 from ``start``: the tuned weights are exactly the start's (or its widening)."""
    config = _tiny_config()
    config["train"] = {**config["train"], "init": str(start), "max_steps": 1, "lr": 0.0, "eval_every": 1}
    return config


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_tiny_maze_training_run_records_the_task_and_resumes(tmp_path):
    config = _tiny_config()
    out = _train(config, tmp_path, tmp_path / "model")
    model, meta = load_model(out)
    assert meta["task"] == "maze" and meta["grid"] == {"rows": 7, "cols": 7}
    assert model.cfg.vocab_size == 6 and model.cfg.seq_len == 49
    assert meta["training"]["steps"] == 4 and set(meta["accuracy"]) == {
        "generated_perfect_depth3",
        "generated_rooms_depth3",
    }
    assert (out / STATE_FILE).exists() and (out / "model.safetensors").exists()
    config["train"]["max_steps"] = 6
    _train(config, tmp_path, out)
    _, meta = load_model(out)
    assert meta["training"]["steps"] == 6 and [h["step"] for h in meta["training"]["history"]] == [2, 4, 6]


def test_a_fine_tune_starts_from_its_init_and_records_the_legs_behind_it(tiny_start, tmp_path):
    tuned = _train(_fine_tune(tiny_start), tmp_path, tmp_path / "tuned")
    start, _ = load_model(tiny_start)
    model, meta = load_model(tuned)
    assert meta["training"]["steps"] == 1 and meta["training"]["config"]["train"]["init"] == str(tiny_start)
    assert _same_weights(start, model)
    # each leg records the legs behind it flat, oldest first, with its last evaluation and no whole history
    (first,) = meta["training"]["earlier"]
    assert (first["folder"], first["steps"], first["last_eval"]["step"]) == (str(tiny_start), 6, 6)
    assert "history" not in first
    _train(_fine_tune(tuned), tmp_path, tmp_path / "tuned-again")
    _, meta = load_model(tmp_path / "tuned-again")
    assert [leg["folder"] for leg in meta["training"]["earlier"]] == [str(tiny_start), str(tuned)]


def test_a_fine_tune_may_supervise_more_steps_and_cycle_its_block_more_than_its_start(tiny_start, tmp_path):
    config = _fine_tune(tiny_start)
    config["arch"] = {**config["arch"], "halt_max_steps": 6, "H_cycles": 2, "L_cycles": 3}
    longer, _ = load_model(_train(config, tmp_path, tmp_path / "longer"))
    start, _ = load_model(tiny_start)
    assert (longer.cfg.halt_max_steps, longer.cfg.H_cycles, longer.cfg.L_cycles) == (6, 2, 3)
    # the same weights (lr 0), applied more often a step
    assert _same_weights(start, longer)


def test_a_fine_tune_may_widen_its_channels_by_a_whole_multiple_or_grow_its_token_mixer(tiny_start, tmp_path):
    config = _fine_tune(tiny_start)
    config["arch"]["hidden_size"] = 32
    wider, meta = load_model(_train(config, tmp_path, tmp_path / "wider"))
    start, _ = load_model(tiny_start)
    assert wider.cfg.hidden_size == 32 and [leg["hidden_size"] for leg in meta["training"]["earlier"]] == [16]
    assert torch.equal(wider.lm_head.weight, start.lm_head.weight.repeat(1, 2) / 2)  # lr 0: the widened start
    config["arch"] = {**config["arch"], "hidden_size": 16, "token_expansion": 4.0}
    mixer, _ = load_model(_train(config, tmp_path, tmp_path / "mixer"))
    old, grown = start.L_level.layers[0].mlp_t.down_proj.weight, mixer.L_level.layers[0].mlp_t.down_proj.weight
    assert mixer.cfg.token_expansion == 4.0 and old.shape == (49, 80) and grown.shape == (49, 144)
    assert torch.equal(grown[:, :80], old) and not grown[:, 80:].any()  # lr 0: the new units still silent


def test_a_fine_tune_refuses_any_other_change_of_shape(tiny_start, tmp_path):
    config = _fine_tune(tiny_start)
    config["arch"]["hidden_size"] = 24
    with pytest.raises(ValueError, match="not a whole multiple"):
        _train(config, tmp_path, tmp_path / "other")
    config["arch"] = {**config["arch"], "hidden_size": 16, "token_expansion": 1.0}
    with pytest.raises(ValueError, match="narrows the token-mixing MLP"):
        _train(config, tmp_path, tmp_path / "other")
    config["arch"] = {**config["arch"], "token_expansion": None, "L_layers": 2}
    with pytest.raises(ValueError, match="L_layers 1 -> 2: a fine-tune may change only halt_max_steps"):
        _train(config, tmp_path, tmp_path / "other")


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
