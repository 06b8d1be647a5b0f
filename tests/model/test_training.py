"""Training pieces: stablemax loss, AdamATan2, EMA, schedule, and a short real run with resume."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eqr.model.checkpoint import load_model
from eqr.model.config import EqRConfig
from eqr.model.losses import stablemax_log_probs, supervision_loss
from eqr.model.network import EqRNetwork
from eqr.model.optim import EMA, AdamATan2
from eqr.model.tasks.data import TaskData
from eqr.model.tasks.sudoku import BLANK_ID
from eqr.model.train import (
    STATE_FILE,
    Carry,
    ConfigError,
    Replay,
    RunConfig,
    TrainConfig,
    lr_at,
    supervised_step,
    train,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS, MODELS = ROOT / "configs", ROOT / "models"


def test_stablemax_is_a_distribution_and_orders_like_softmax():
    x = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    p = stablemax_log_probs(x).exp()
    assert torch.allclose(p.sum(-1), torch.ones(1, dtype=torch.float64))
    assert torch.equal(p.argsort(), torch.softmax(x, -1).argsort())
    # s(2) = 3, s(-1) = 1/2: probabilities are ratios of s
    assert torch.isclose(p[0, 0] / p[0, 1], torch.tensor(6.0, dtype=torch.float64))


def test_supervision_loss_rewards_correct_logits_and_q_halt():
    labels = torch.randint(2, 11, (4, 81))
    good = torch.nn.functional.one_hot(labels, 11).float() * 10
    bad = torch.zeros_like(good)
    q = torch.full((4,), 5.0)
    loss_good, stats, _ = supervision_loss(good, q, labels)
    loss_bad, _, _ = supervision_loss(bad, q, labels)
    assert loss_good < loss_bad and stats["exact_acc"] == 1.0 and stats["cell_acc"] == 1.0
    loss_q_wrong, _, _ = supervision_loss(good, -q, labels)
    assert loss_q_wrong > loss_good


def test_adam_atan2_update_is_bounded_and_decays_weights():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamATan2([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.tensor([1e6, -1e-6, 0.0])
    opt.step()
    step = torch.ones(3) - p.detach()
    assert (step.abs() <= 0.1 * torch.pi / 2 + 1e-6).all()
    assert step[0] > 0 and step[1] < 0 and step[2] == 0
    q = torch.nn.Parameter(torch.ones(1))
    opt = AdamATan2([q], lr=0.1, weight_decay=0.5)
    q.grad = torch.zeros(1)
    opt.step()
    assert torch.isclose(q.detach(), torch.tensor([0.95]))


def test_ema_tracks_parameters():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], model.weight.detach() - 1.0)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0
    assert abs(lr_at(110, cfg) - 0.1) < 1e-9 and lr_at(60, cfg) < lr_at(20, cfg)


def _tiny_maze_model() -> EqRNetwork:
    arch = {"vocab_size": 6, "seq_len": 9, "hidden_size": 16, "multiple_of": 16, "L_layers": 1, "H_cycles": 1,
            "L_cycles": 1, "mlp_t": True, "pos_encodings": "none", "puzzle_emb_ndim": 0}  # fmt: skip
    return EqRNetwork(EqRConfig.from_dict(arch))


def test_hard_example_replay_gives_puzzles_that_halted_wrong_back_to_a_share_of_the_rows():
    model, gen = _tiny_maze_model(), torch.Generator().manual_seed(0)
    drawn = iter(range(1, 1000))  # every fresh puzzle is a row of one number, so where a row came from shows

    def sample(n, progress):
        rows = np.array([[next(drawn)] * 9 for _ in range(n)])
        return rows, rows

    data = TaskData(sample=sample, eval_sets={}, meta={})
    carry = Carry(model, 8, torch.device("cpu"), replay_share=0.5, replay_capacity=16)
    carry.refill(model, data, 0.0, gen)  # rows 1..8, nothing failed yet (the rows had never run)
    assert carry.tokens[:, 0].tolist() == list(range(1, 9)) and len(carry.replay) == 0
    carry.steps += 1
    carry.halted[:] = True
    carry.wrong[:] = torch.tensor([True, True, True, False, False, False, False, False])
    carry.refill(model, data, 0.0, gen)  # half the 8 rows want replays: the 3 failed puzzles, then 5 fresh
    assert sorted(carry.tokens[:3, 0].tolist()) == [1, 2, 3] and carry.tokens[3:, 0].tolist() == list(range(9, 14))
    assert len(carry.replay) == 0 and torch.equal(carry.tokens, carry.labels)
    plain = Carry(model, 8, torch.device("cpu"))
    plain.refill(model, data, 0.0, gen)
    plain.steps += 1
    plain.halted[:] = plain.wrong[:] = True
    plain.refill(model, data, 0.0, gen)
    assert plain.tokens[:, 0].tolist() == list(range(22, 30))  # no share: every row fresh
    with pytest.raises(ValueError, match="replay_share must be in"):
        TrainConfig(replay_share=1.0)


def test_a_supervised_step_marks_the_rows_whose_board_is_wrong():
    model, gen = _tiny_maze_model(), torch.Generator().manual_seed(0)
    carry = Carry(model, 4, torch.device("cpu"), replay_share=0.5)
    rows = np.full((4, 9), 2)
    carry.refill(model, TaskData(sample=lambda n, progress: (rows[:n], rows[:n]), eval_sets={}, meta={}), 0.0, gen)
    opt, ema = AdamATan2(model.parameters(), lr=1e-3), EMA(model, 0.9)
    _, stats = supervised_step(model, opt, ema, carry, lambda call, z: torch.zeros_like(z), 0.0, gen)
    assert carry.wrong.float().mean().item() == pytest.approx(1 - stats["exact_acc"])
    assert carry.wrong.any()  # an untrained model gets boards wrong


def test_short_training_run_writes_model_and_resumes(tmp_path, monkeypatch):
    config = {
        "name": "tiny",
        "arch": {
            "hidden_size": 16,
            "expansion": 2.0,
            "multiple_of": 16,
            "L_layers": 1,
            "H_cycles": 1,
            "L_cycles": 1,
            "halt_max_steps": 2,
        },
        "train": {"batch_size": 8, "max_steps": 6, "warmup_steps": 2, "eval_every": 3, "eval_puzzles": 4, "threads": 1,
                  "replay_share": 0.25},
        "data": {"mixed_puzzles": 40, "hard_candidates": 40, "hard_min_nodes": 1, "workers": 1},
        "inference": {"window": 2, "tol": 0.5, "aggregate": "vote"},
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "model"
    train(path, out, cache_dir=tmp_path / "cache")
    _, meta = load_model(out)
    assert meta["training"]["steps"] == 6 and len(meta["training"]["history"]) == 2
    # the folder is read the way its config says, over the training depth and noise
    assert meta["inference"] == {"depth": 32, "noise": 0.01, "window": 2, "tol": 0.5, "aggregate": "vote"}
    assert (out / STATE_FILE).exists()
    # the replay buffer is part of the state: the resumed run starts from the puzzles that had failed
    saved = torch.load(out / STATE_FILE, weights_only=False)["replay"]
    puzzles, answers = saved  # Sudoku puzzles and their solutions: the givens kept, every blank filled
    assert len(puzzles) > 0 and (puzzles == BLANK_ID).any() and not (answers == BLANK_ID).any()
    assert torch.equal(answers[puzzles != BLANK_ID], puzzles[puzzles != BLANK_ID])
    pushed: list[tuple[torch.Tensor, torch.Tensor]] = []
    push = Replay.push
    monkeypatch.setattr(Replay, "push", lambda self, t, y: (pushed.append((t, y)), push(self, t, y)))
    config["train"]["max_steps"] = 8
    path.write_text(json.dumps(config))
    train(path, out, cache_dir=tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(pushed[0], saved, strict=True))
    _, meta = load_model(out)
    assert meta["training"]["steps"] == 8
    assert [h["step"] for h in meta["training"]["history"]] == [3, 6, 8]


def test_a_config_names_a_base_and_overrides_its_keys(tmp_path):
    base = {
        "name": "base",
        "arch": {"hidden_size": 16, "L_layers": 1},
        "train": {"lr": 1e-3, "max_steps": 100, "seed": 1},
        "data": {"mixed_puzzles": 40, "workers": 1},
        "inference": {"window": 2, "tol": 0.5},
    }
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "legs").mkdir()
    leg = {"base": "../base.json", "arch": {"hidden_size": 32}, "train": {"lr": 2e-4}, "inference": {"tol": 0.2}}
    (tmp_path / "legs" / "leg.json").write_text(json.dumps(leg))
    leg2 = {"name": "second", "base": "leg.json", "train": {"seed": 9}}
    (tmp_path / "legs" / "leg2.json").write_text(json.dumps(leg2))
    cfg = RunConfig.load(tmp_path / "legs" / "leg.json")
    assert cfg.name == "leg"  # never the base's name
    assert (cfg.arch.hidden_size, cfg.arch.L_layers) == (32, 1)
    assert (cfg.train.lr, cfg.train.max_steps, cfg.train.seed, cfg.data.mixed_puzzles) == (2e-4, 100, 1, 40)
    assert cfg.inference == {"window": 2, "tol": 0.2}
    second = RunConfig.load(tmp_path / "legs" / "leg2.json")
    assert second.name == "second" and (second.arch.hidden_size, second.train.lr, second.train.seed) == (32, 2e-4, 9)

    (tmp_path / "base.json").write_text(json.dumps({**base, "base": "legs/leg2.json"}))
    with pytest.raises(ConfigError, match="comes back to itself"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").unlink()
    with pytest.raises(ConfigError, match=r"base\.json: no such config"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").write_text(json.dumps({**base, "inference": {"tolerance": 0.5}}))
    with pytest.raises(ConfigError, match="inference has no key tolerance; its keys: aggregate, breadth_mode, depth"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").write_text(json.dumps({**base, "train": {"learning_rate": 1e-3}}))
    with pytest.raises(ConfigError, match="train has no key learning_rate"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").write_text(json.dumps({**base, "arch": {"hidden": 16}}))
    with pytest.raises(ConfigError, match="arch has no key hidden;"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").write_text(json.dumps({**base, "train": "lr=1e-3"}))
    with pytest.raises(ConfigError, match=r"base\.json: train is a JSON object of keys, not str"):
        RunConfig.load(tmp_path / "legs" / "leg.json")
    (tmp_path / "base.json").write_text(json.dumps([base]))
    with pytest.raises(ConfigError, match=r"base\.json: a run config is a JSON object, not list"):
        RunConfig.load(tmp_path / "legs" / "leg.json")


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(config):
    assert RunConfig.load(config).name == config.stem


@pytest.mark.parametrize("folder", sorted(p.parent for p in MODELS.glob("*/config.json")), ids=lambda p: p.name)
def test_a_bundled_model_was_trained_on_what_its_config_file_says(folder):
    doc = json.loads((folder / "config.json").read_text())
    recorded = doc["training"]["config"]
    config = RunConfig.load(CONFIGS / f"{recorded['name']}.json")
    resolved = config.to_dict()
    # and is read the way its config says (what a run of the config writes into its folder)
    assert config.inference and {k: doc["inference"].get(k) for k in config.inference} == config.inference
    # arch keys added since the run take their defaults
    assert EqRConfig.from_dict(recorded["arch"]).to_dict() == resolved["arch"] and recorded["data"] == resolved["data"]
    defaults = dataclasses.asdict(TrainConfig())
    for key, value in resolved["train"].items():
        if key == "init":  # a run names its start where it was; the configs name the runs folder
            assert Path(value).name == Path(recorded["train"][key]).name
        else:  # keys added since the run take their defaults
            assert recorded["train"].get(key, defaults[key]) == value, key


def test_eqr_train_says_what_is_wrong_with_a_config(tmp_path, capsys):
    from eqr.server.cli import main

    config = tmp_path / "leg.json"
    config.write_text(json.dumps({"base": "missing.json"}))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "missing.json: no such config" in capsys.readouterr().err
    config.write_text(json.dumps({"arch": {"hidden_size": 16}, "train": {"init": str(tmp_path / "nowhere")}}))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "train.init:" in capsys.readouterr().err and not (tmp_path / "out" / STATE_FILE).exists()
    # a value the server would refuse stops the run before it trains, not when its folder is first served
    nowhere = {"init": str(tmp_path / "nowhere")}  # were the value not checked first, this would stop it at once
    config.write_text(json.dumps({"arch": {"hidden_size": 16}, "train": nowhere, "inference": {"aggregate": "voet"}}))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "voet")]) == 2
    err = capsys.readouterr().err
    assert "leg.json: the model's inference.aggregate must be one of" in err and not (tmp_path / "voet").exists()
