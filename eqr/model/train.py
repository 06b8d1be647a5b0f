"""Training with deep supervision (eqr.md §4), on CPU or GPU.

A batch of rows each carries one puzzle and its latent state across optimizer steps. Every
step runs one ACT step with gradients through the last cycle only, then detaches the state;
a row is refilled with a fresh puzzle and fresh random latents once it used ``halt_max_steps``
steps or its learned halt fires. Losses: stablemax cross-entropy + 0.5 × q-halt BCE.
Optimiser: AdamATan2 with decoupled weight decay, linear warm-up then cosine decay; an EMA of
the weights is what gets evaluated and shipped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from eqr.model.checkpoint import INFERENCE_KEYS, CheckpointError, load_model, save_model
from eqr.model.config import EqRConfig
from eqr.model.losses import supervision_loss
from eqr.model.network import EqRNetwork
from eqr.model.optim import EMA, AdamATan2
from eqr.model.step import answers, fresh_batch
from eqr.model.tasks.data import DataConfig, MazeMix, TaskData, maze_data, sudoku_data
from eqr.model.tasks.registry import task_for
from eqr.model.widen import grow_to

STATE_FILE = "train_state.pt"
DATA_CONFIGS: dict[str, type[DataConfig] | type[MazeMix]] = {"sudoku": DataConfig, "maze": MazeMix}


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 200
    max_steps: int = 20_000
    min_lr_ratio: float = 0.1  # cosine decays to lr·min_lr_ratio; 1.0 gives the paper's constant lr
    ema_decay: float = 0.995
    halt_exploration_prob: float = 0.1
    threads: int = 2
    eval_every: int = 500
    eval_puzzles: int = 256
    eval_depth: int = 16  # iterations of the held-out probe; a model that settles later reads low at 16
    checkpoint_minutes: float = 5.0
    seed: int = 0
    device: str = "cpu"
    # a model folder whose weights start the run (fine-tuning); only when OUT holds no training state
    init: str | None = None
    # hard-example replay: this share of the rows refilled each step is drawn again from the puzzles whose
    # rows halted with a wrong answer (the last replay_capacity of them), so a puzzle the model settles on
    # wrongly, and halts on early, is not replaced by a fresh one it already solves; 0: every row is fresh
    replay_share: float = 0.0
    replay_capacity: int = 4096

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError(f"train.replay_share must be in [0, 1), got {self.replay_share}")
        if self.replay_capacity < 1:
            raise ValueError(f"train.replay_capacity must be at least 1, got {self.replay_capacity}")


# ``inference`` is the run folder's own block (how the engine reads the model: its convergence rule,
# breadth rule, verified schedule), written over the training depth and noise, so a trained folder
# serves and measures as the shipped one will
SECTIONS = ("arch", "train", "data", "inference")


class ConfigError(ValueError):
    """A run config that cannot start a run; the message names the file or key and why."""


def read_run_doc(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A run config's JSON with its ``base`` resolved.

    A fine-tune leg is its predecessor's recipe with two or three keys changed: ``"base"`` names that
    config (a path from this file's folder), and this file's ``arch``, ``train``, ``data`` and
    ``inference`` keys override the base's one by one. The name is never inherited. What a run
    records is the resolved config, so a model folder still says all of its recipe.
    """
    if path.resolve() in seen:
        raise ConfigError(f"{path}: its base chain comes back to itself")
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such config") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a run config is a JSON object, not {type(doc).__name__}")
    for section in SECTIONS:
        if not isinstance(doc.get(section, {}), dict):
            raise ConfigError(f"{path}: {section} is a JSON object of keys, not {type(doc[section]).__name__}")
    doc.setdefault("name", path.stem)
    base = doc.pop("base", None)
    if base is None:
        return doc
    parent = read_run_doc(path.parent / base, (*seen, path.resolve()))
    merged = {**parent, **doc}
    for section in SECTIONS:
        merged[section] = {**parent.get(section, {}), **doc.get(section, {})}
    return merged


@dataclass(frozen=True)
class RunConfig:
    name: str
    arch: EqRConfig
    train: TrainConfig
    data: DataConfig | MazeMix
    task: str = "sudoku"
    inference: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        """Read a run config; its ``task`` (default ``sudoku``) says what the ``data`` section describes."""
        doc = read_run_doc(Path(path))
        task = doc.get("task", "sudoku")
        if task not in DATA_CONFIGS:
            raise ConfigError(f"{path}: unknown task {task!r}; training supports {', '.join(DATA_CONFIGS)}")
        blocks = {"arch": EqRConfig, "train": TrainConfig, "data": DATA_CONFIGS[task]}
        known_keys = {s: {f.name for f in dataclasses.fields(b)} for s, b in blocks.items()}
        for section, known in {**known_keys, "inference": set(INFERENCE_KEYS)}.items():
            unknown = sorted(set(doc.get(section, {})) - known)
            if unknown:
                keys = ", ".join(sorted(known))
                raise ConfigError(f"{path}: {section} has no key {', '.join(unknown)}; its keys: {keys}")
        try:
            return cls(
                name=doc["name"],
                arch=EqRConfig.from_dict(doc.get("arch", {})),
                train=TrainConfig(**doc.get("train", {})),
                data=DATA_CONFIGS[task](**doc.get("data", {})),
                task=task,
                inference=doc.get("inference", {}),
            )
        except (TypeError, ValueError) as exc:  # values a block refuses
            raise ConfigError(f"{path}: {exc}") from exc

    def task_data(self, cache_dir: str | Path, seed: int) -> TaskData:
        """The task's training stream (sampler seeded with ``seed``) and held-out sets."""
        if isinstance(self.data, MazeMix):
            if self.arch.seq_len != self.data.size**2:
                size, seq = self.data.size, self.arch.seq_len
                raise ConfigError(f"arch.seq_len {seq} does not fit {size}x{size} mazes (needs {size**2})")
            return maze_data(self.data, seed, self.train.eval_puzzles)
        return sudoku_data(self.data, cache_dir, seed, self.train.eval_puzzles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "arch": self.arch.to_dict(),
            "train": dataclasses.asdict(self.train),
            "data": dataclasses.asdict(self.data),
            "inference": self.inference,
        }


def earlier_legs(meta: dict[str, Any], folder: str | Path) -> list[dict[str, Any]]:
    """The legs behind a fine-tune's starting folder, oldest first, one flat entry each.

    An entry keeps the recipe (config name, train and data blocks), its length and its last
    evaluation, not the whole history: a model tuned leg after leg keeps a config that stays small
    and still says how it was made.
    """
    training = meta.get("training")
    if not training:
        return []
    config, history = training["config"], training.get("history", [])
    leg = {
        "folder": str(folder),
        "config": config.get("name"),
        "hidden_size": config.get("arch", {}).get("hidden_size"),  # a later leg may have widened it
        "train": config.get("train"),
        "data": config.get("data"),
        "steps": training.get("steps"),
        "minutes": training.get("minutes"),
        "last_eval": history[-1] if history else None,
    }
    return [*training.get("earlier", []), leg]


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Replay:
    """Puzzles whose rows halted wrong, kept (the newest ``capacity``) until a refill draws them again."""

    def __init__(self, capacity: int, seq_len: int, device: torch.device) -> None:
        self.capacity = capacity
        self.tokens = torch.zeros(0, seq_len, dtype=torch.long, device=device)
        self.labels = torch.zeros_like(self.tokens)

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def push(self, tokens: torch.Tensor, labels: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, tokens])[-self.capacity :]
        self.labels = torch.cat([self.labels, labels])[-self.capacity :]

    def take(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` puzzles drawn at random and removed (a puzzle that fails again comes back by ``push``)."""
        order = torch.randperm(len(self), generator=gen).to(self.tokens.device)
        taken, kept = order[:n], order[n:]
        out = self.tokens[taken], self.labels[taken]
        self.tokens, self.labels = self.tokens[kept], self.labels[kept]
        return out


class Carry:
    """The rows of the deep-supervision batch: latent state, puzzle, label, step count, and whether the
    row's last answer was wrong (for hard-example replay)."""

    def __init__(
        self,
        model: EqRNetwork,
        batch: int,
        device: torch.device,
        replay_share: float = TrainConfig.replay_share,
        replay_capacity: int = TrainConfig.replay_capacity,
    ) -> None:
        s, d = model.cfg.seq_total, model.cfg.hidden_size
        self.z_H = torch.zeros(batch, s, d, device=device)
        self.z_L = torch.zeros(batch, s, d, device=device)
        self.tokens = torch.zeros(batch, model.cfg.seq_len, dtype=torch.long, device=device)
        self.labels = torch.zeros_like(self.tokens)
        self.steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.halted = torch.ones(batch, dtype=torch.bool, device=device)
        self.wrong = torch.zeros(batch, dtype=torch.bool, device=device)
        self.replay_share = replay_share
        self.replay = Replay(replay_capacity, model.cfg.seq_len, device)

    def refill(self, model: EqRNetwork, data: TaskData, progress: float, gen: torch.Generator) -> None:
        """Give every halted row a puzzle and fresh latents: from the replay buffer for its share of
        the rows (as far as it holds puzzles), the rest freshly sampled."""
        idx = self.halted.nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        if self.replay_share > 0:
            failed = idx[(self.wrong & (self.steps > 0))[idx]]  # a row that never ran holds no puzzle
            self.replay.push(self.tokens[failed], self.labels[failed])
        again = min(len(self.replay), round(self.replay_share * idx.numel()))
        dev = self.tokens.device
        if again:
            self.tokens[idx[:again]], self.labels[idx[:again]] = self.replay.take(again, gen)
        if idx.numel() > again:
            p, s = data.sample(idx.numel() - again, progress)
            self.tokens[idx[again:]] = torch.from_numpy(p).long().to(dev)
            self.labels[idx[again:]] = torch.from_numpy(s).long().to(dev)
        seeds = torch.randint(0, 2**62, (idx.numel(),), generator=gen).to(dev)
        self.z_H[idx], self.z_L[idx] = model.initial_state(seeds)
        self.steps[idx] = 0
        self.halted[idx] = False


def supervised_step(
    model: EqRNetwork,
    opt: torch.optim.Optimizer,
    ema: EMA,
    carry: Carry,
    noise: Callable[[int, torch.Tensor], torch.Tensor],
    halt_exploration_prob: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One optimizer step of deep supervision on the carried rows: loss, update, EMA, then the rows'
    latents advance and their halting is decided (the training loop and the GPU throughput probe,
    ``benchmarks/train_throughput.py``, share it so the probe times exactly what training runs)."""
    x = model.embed(carry.tokens)
    z_H, z_L = model.recur(carry.z_H, carry.z_L, x, noise, grad_last_only=True)
    logits, q_halt = model.heads(z_H)
    loss, stats, solved = supervision_loss(logits, q_halt, carry.labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ema.update(model)

    with torch.no_grad():
        rows, max_steps = carry.tokens.shape[0], model.cfg.halt_max_steps
        carry.z_H, carry.z_L = z_H.detach(), z_L.detach()
        carry.wrong = ~solved
        carry.steps += 1
        halted = carry.steps >= max_steps
        # learned halting with exploration: sometimes force a random minimum number of steps
        explore = torch.rand(rows, generator=gen) < halt_exploration_prob
        min_steps = torch.where(explore, torch.randint(2, max_steps + 1, (rows,), generator=gen), 0)
        carry.halted = halted | ((q_halt.detach() > 0) & (carry.steps >= min_steps.to(carry.steps.device)))
    return loss, stats


@torch.no_grad()
def evaluate_generated(
    model: EqRNetwork, eval_sets: dict, depth: int, meta: dict[str, Any], batch: int = 256
) -> dict[str, float]:
    """Exact accuracy of each generated set's final boards after ``depth`` iterations, read as the server
    reads answers (the task's givens kept): a training probe (the served policies, convergence
    included, are measured by ``eqr eval``)."""
    allowed = task_for(meta).allowed
    out, device = {}, next(model.parameters()).device
    for name, (tokens, labels) in eval_sets.items():
        right = 0
        for start in range(0, len(tokens), batch):
            rows = tokens[start : start + batch].to(device)
            seeds = torch.arange(start, start + len(rows), device=device)
            state = fresh_batch(model, rows, seeds, model.cfg.noise_scale)
            for _ in range(depth):
                o = model.iterate(state)
                state = state.advanced(o)
            mask = allowed(rows.cpu().numpy())
            pred = (
                state.prev_pred
                if mask is None
                else answers(state.prev_pred, torch.as_tensor(mask).to(device), state.prev_logits)
            )
            right += int((pred.cpu() == labels[start : start + batch]).all(dim=1).sum())
        out[name] = right / len(tokens)
    return out


def train(
    config_path: str | Path, out_dir: str | Path, cache_dir: str | Path = "data/cache", threads: int | None = None
) -> Path:
    """Train (or resume from ``out_dir``) and write the EMA model to ``out_dir`` periodically.

    ``threads`` overrides the config's CPU thread count (one thread per free core: oversubscribed
    OpenMP threads spin against each other and can make a step ten times slower).
    """
    cfg = RunConfig.load(config_path)
    if threads is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    tc = cfg.train
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    device = torch.device(tc.device)

    model = EqRNetwork(cfg.arch).to(device)
    opt = AdamATan2(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2), weight_decay=tc.weight_decay)
    ema = EMA(model, tc.ema_decay)
    step, elapsed = 0, 0.0
    history: list[dict[str, Any]] = []
    earlier: list[dict[str, Any]] = []
    replayed: tuple[torch.Tensor, torch.Tensor] | None = None
    state_path = out / STATE_FILE
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.shadow = state["ema"]
        step, elapsed, history = state["step"], state["elapsed"], state.get("history", [])
        earlier = state.get("earlier", [])
        replayed = state.get("replay")
        print(f"resuming from step {step} ({elapsed / 60:.1f} min trained)")
    elif tc.init is not None:
        try:
            start, start_meta = load_model(tc.init, device)
        except CheckpointError as exc:
            raise ConfigError(f"train.init: {exc}") from exc
        try:
            start = grow_to(start, cfg.arch)
        except ValueError as exc:
            raise ConfigError(f"train.init {tc.init}: {exc}") from exc
        model.load_state_dict(start.state_dict())
        ema = EMA(model, tc.ema_decay)
        earlier = earlier_legs(start_meta, tc.init)
        print(f"starting from the weights of {tc.init} (hidden_size {start_meta['arch']['hidden_size']})")

    data = cfg.task_data(cache_dir, seed=tc.seed * 7919 + step)
    gen = torch.Generator().manual_seed(tc.seed * 104729 + step)
    eval_sets = {k: tuple(torch.from_numpy(x).long() for x in v) for k, v in data.eval_sets.items()}
    eval_model = EqRNetwork(cfg.arch).to(device).eval()
    carry = Carry(model, tc.batch_size, device, tc.replay_share, tc.replay_capacity)
    if replayed is not None:  # a resumed run goes on replaying what had failed (kept, too, at share 0)
        carry.replay.push(*replayed)
    sigma = cfg.arch.noise_scale

    def noise(call: int, z: torch.Tensor) -> torch.Tensor:
        return sigma * torch.randn_like(z)

    def checkpoint(metrics: dict[str, Any]) -> None:
        eval_model.load_state_dict(model.state_dict())
        ema.copy_to(eval_model)
        meta = {
            **data.meta,
            "training": {
                "config": cfg.to_dict(),
                "steps": step,
                "minutes": round(elapsed / 60, 1),
                "history": history,
                **({"earlier": earlier} if earlier else {}),
            },
            "inference": {"depth": 32, "noise": sigma, **cfg.inference},
            **({"accuracy": metrics} if metrics else {}),
        }
        save_model(out, eval_model, meta)
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "ema": ema.shadow,
                "step": step,
                "elapsed": elapsed,
                "history": history,
                "earlier": earlier,
                "replay": (carry.replay.tokens, carry.replay.labels),
            },
            state_path,
        )

    last_ckpt = time.time()
    bar = tqdm(total=tc.max_steps, initial=step, desc=f"train {cfg.name}", unit="step")
    model.train()
    while step < tc.max_steps:
        t0 = time.time()
        progress = step / tc.max_steps
        carry.refill(model, data, progress, gen)
        lr = lr_at(step, tc)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, stats = supervised_step(model, opt, ema, carry, noise, tc.halt_exploration_prob, gen)
        step += 1
        elapsed += time.time() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", cell=f"{stats['cell_acc']:.3f}", exact=f"{stats['exact_acc']:.3f}")
        metrics: dict[str, Any] = {}
        if step % tc.eval_every == 0 or step == tc.max_steps:
            eval_model.load_state_dict(model.state_dict())
            ema.copy_to(eval_model)
            metrics = {
                f"generated_{k}_depth{tc.eval_depth}": v
                for k, v in evaluate_generated(eval_model, eval_sets, tc.eval_depth, data.meta).items()
            }
            history.append({"step": step, "minutes": round(elapsed / 60, 1), **metrics, **stats})
            bar.write(f"step {step}: {json.dumps(history[-1])}")
        if metrics or time.time() - last_ckpt > tc.checkpoint_minutes * 60 or step == tc.max_steps:
            checkpoint(metrics)
            last_ckpt = time.time()
    bar.close()
    return out
