"""The ``eqr`` command line: train, eval, convert, solve, serve, and the distributed api and worker.

Why one file of ~360 lines: each subcommand is a handler of a few lines (the work lives in the
modules it calls) next to its flags, so ``eqr <command> --help`` and what the command does are
read in one place; the server settings' flags come from :mod:`eqr.server.flags`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: `eqr --help` must not import the server
    from eqr.server.broker.redis_protocol import RedisOptions
    from eqr.server.settings import Settings


def _train(args: argparse.Namespace) -> int:
    from eqr.model.train import ConfigError, RunConfig, train
    from eqr.server.engine.plan import ModelDefaults

    try:
        inference = RunConfig.load(args.config).inference
        try:  # the folder it writes must serve: its inference values are checked now, as a server will
            ModelDefaults.from_folder(inference, depth=1, noise=0.0, window=1, tol=0.0)
        except ValueError as exc:
            raise ConfigError(f"{args.config}: {exc}") from exc
        train(args.config, args.out, cache_dir=args.cache, threads=args.threads)
    except ConfigError as exc:
        print(f"eqr train: {exc}", file=sys.stderr)
        return 2
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    """Comma-separated positive integers, e.g. ``1,4,16,64``."""
    items = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() and int(t) > 0 for t in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 1,4,16, got {text!r}")
    return [int(t) for t in items]


def _rule_list(text: str) -> list[str]:
    from eqr.model.aggregate import AGGREGATES

    items = [t.strip() for t in text.split(",")]
    bad = [t for t in items if t not in AGGREGATES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown aggregate rule(s) {bad}; choose from {AGGREGATES}")
    return list(dict.fromkeys(items))


def _puzzle_arg(value: str) -> str:
    """A puzzle on the command line, or the name of a file holding one (a maze is easier written in a file)."""
    import os

    if "\n" not in value and os.path.isfile(value):
        with open(value) as fh:
            return fh.read()
    return value


def _load(command: str, model_dir: str | None, device: str = "cpu") -> tuple | None:
    """Load a model folder (default: the bundled one), or print why not and return None."""
    from eqr.model.bundled import default_model_dir
    from eqr.model.checkpoint import CheckpointError, load_model

    try:
        return load_model(model_dir or default_model_dir(), device=device)
    except CheckpointError as exc:
        print(f"eqr {command}: {exc}", file=sys.stderr)
        return None


def _model_name(model_dir: str | None) -> str:
    """A model folder's name as ``eqr serve`` names it (the folder's), for offline results and messages."""
    from pathlib import Path

    from eqr.model.bundled import default_model_dir

    return Path(model_dir or default_model_dir()).name


def _eval(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from eqr.model.tasks.registry import task_for
    from eqr.offline import policies
    from eqr.offline.evaluate import evaluate_file, format_table, plot_frontier, plot_records, write_json
    from eqr.server.engine import InvalidParam, SolveParams
    from eqr.server.flags import request_fields

    if args.policies:
        if args.aggregate is not None or len(args.depth or [0]) > 1 or len(args.breadth or [0]) > 1:
            print(
                "eqr eval: --policies takes one --depth and one --breadth (the cap) and no --aggregate: "
                "each named policy sets its own",
                file=sys.stderr,
            )
            return 2
        reference = policies.paper()
        chosen = policies.named((args.depth or [64])[0], (args.breadth or [16])[0], reference)
    else:
        chosen = policies.grid(
            args.depth or [1, 4, 16, 64], args.breadth or [1, 4, 16], args.aggregate or ["converged", "vote"]
        )
    missing = [f for f in args.data if not os.path.isfile(f)]
    if missing:
        print(f"eqr eval: data file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    loaded = _load("eval", args.model, args.device)
    if loaded is None:
        return 2
    model, meta = loaded
    task = task_for(meta)
    grid = ("depth", "breadth", "aggregate")  # the policies' own
    params = SolveParams(**{k: v for k, v in request_fields(args).items() if k not in grid})
    shown = ", ".join(f"{k} {v}" for k, v in vars(params).items() if v is not None)
    print(f"request fields: {shown}, under each policy's own; the rest the model's defaults")
    records, last = [], []  # last: per data file, the cheapest adaptive policy reaching the paper protocol
    for path in args.data:
        try:
            found = evaluate_file(
                model,
                meta,
                path,
                task,
                limit=args.limit,
                policies=chosen,
                params=params,
                batch_size=args.batch_size,
                progress=True,
                name=_model_name(args.model),
            )
        except InvalidParam as exc:
            print(f"eqr eval: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:  # unreadable CSV rows and invalid puzzles (PuzzleError)
            message = str(exc) if path in str(exc) else f"{path}: {exc}"
            print(f"eqr eval: {message}", file=sys.stderr)
            return 2
        records += found
        if args.policies:
            line = policies.reference_line(found, next(r for r in found if r["policy"] == reference.name))
            last.append(f"{Path(path).name}: {line}" if len(args.data) > 1 else line)
    if args.json:
        print(f"wrote {write_json(records, args.json)}")
    plot = args.plot or (Path(args.json).with_suffix(".png") if args.json else "eval.png")
    print(f"wrote {(plot_frontier if args.policies else plot_records)(records, plot)}")
    print(format_table(records))
    for line in last:
        print(line)
    return 0


def _solve(args: argparse.Namespace) -> int:
    if args.server:  # through a running server with the SDK; never loads torch or a model here
        from eqr.server.remote_solve import solve_remote

        return solve_remote(args)
    if args.stream:
        print("eqr solve: --stream needs --server (it shows the server's live progress)", file=sys.stderr)
        return 2
    return _solve_offline(args)


def _solve_offline(args: argparse.Namespace) -> int:
    """Solve in this process with a local model folder (no server involved), in the folder's task."""
    import numpy as np

    from eqr.model.tasks.errors import PuzzleError
    from eqr.model.tasks.registry import task_for
    from eqr.offline.solve import solve_offline
    from eqr.server.api.schemas import SolveResponse
    from eqr.server.engine import InvalidParam, SolveParams
    from eqr.server.flags import request_fields

    loaded = _load("solve", args.model)
    if loaded is None:
        return 2
    model, meta = loaded
    task = task_for(meta)
    name = _model_name(args.model)
    try:
        puzzle = task.parse(args.puzzle)
    except PuzzleError as exc:
        print(f"eqr solve: invalid puzzle: {exc}", file=sys.stderr)
        return 2
    params = SolveParams(**request_fields(args))
    try:
        result = solve_offline(model, task, meta, puzzle.tokens, params, name=name, form=puzzle.form)
    except InvalidParam as exc:
        print(f"eqr solve: --{exc.field.replace('_', '-')}: {exc}", file=sys.stderr)
        return 2
    if args.json:  # the HTTP response's shape, as `eqr solve --server --json` prints it
        print(SolveResponse.of(result, name, task).model_dump_json())
        return 0
    answer = np.asarray(result.answer)
    converged = result.iterations_to_convergence
    when = f" (converged at {converged})" if converged is not None else ""
    print(task.text(answer))
    compact = task.board(answer)
    if isinstance(compact, str) and "\n" not in compact:  # a one-line form (Sudoku's 81 characters) to copy
        print(compact)
    valid = {True: "yes", False: "no", None: "n/a"}[result.valid]
    print(
        f"status: {result.status.value}  iterations: {max(result.iterations, default=0)}{when}  "
        f"valid: {valid}  breadth: {len(result.iterations)} (agreement {result.agreement:.2f})"
    )
    return 0


def _convert(args: argparse.Namespace) -> int:
    """Convert the paper's eqr.pth into a model folder; errors are one line and exit code 2."""
    from eqr.model.checkpoint import CheckpointError
    from eqr.model.paper_checkpoint import convert, read_arch_file

    try:
        arch = read_arch_file(args.arch) if args.arch else None
        out = convert(args.src, args.out, trust=args.trust, arch=arch, seq_len=args.seq_len)
    except (CheckpointError, OSError) as exc:
        print(f"eqr convert: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _settings(command: str, args: argparse.Namespace) -> Settings | None:
    """``Settings`` from ``EQR_*`` variables overridden by the flags given, or None after printing why not."""
    from pydantic import ValidationError

    from eqr.server.settings import Settings

    given = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        print(f"eqr {command}: invalid setting: {exc}", file=sys.stderr)
        return None
    return settings if _api_keys_usable(command, settings) else None


def _api_keys_usable(command: str, settings: Settings) -> bool:
    """An unreadable or empty key file fails here, in one line: serving without keys would fail open."""
    if command not in ("serve", "api"):
        return True
    from eqr.server.api.auth import ApiKeyError, load_api_keys

    try:
        load_api_keys(settings)
    except ApiKeyError as exc:
        print(f"eqr {command}: {exc}", file=sys.stderr)
        return False
    return True


def _redis_options(command: str, args: argparse.Namespace) -> RedisOptions | None:
    """``RedisOptions`` from ``EQR_REDIS_*`` variables overridden by the ``redis_*`` flags, or None."""
    from pydantic import ValidationError

    from eqr.server.broker.redis_protocol import RedisOptions

    given = {k[6:]: v for k, v in vars(args).items() if k.startswith("redis_") and v is not None}
    try:
        return RedisOptions(**given)
    except ValidationError as exc:
        print(f"eqr {command}: invalid setting: {exc}", file=sys.stderr)
        return None


def _model_readable(command: str, settings: Settings) -> bool:
    """A wrong model path, or a folder whose task this version cannot serve, fails here in one line,
    not in a server traceback."""
    from eqr.model.checkpoint import CheckpointError, read_config
    from eqr.model.tasks.registry import task_for

    for folder in settings.model:
        try:
            task_for(read_config(folder))
        except CheckpointError as exc:
            print(f"eqr {command}: {exc}", file=sys.stderr)
            return False
        except ValueError as exc:  # the folder's task block
            print(f"eqr {command}: {folder}: {exc}", file=sys.stderr)
            return False
    return True


def _serve(args: argparse.Namespace) -> int:
    """Serve the model over HTTP; flags override ``EQR_*`` environment variables."""
    from eqr.server.serve import run

    settings = _settings("serve", args)
    if settings is None or not _model_readable("serve", settings):
        return 2
    if settings.default_model_name not in settings.served_names:
        served = ", ".join(map(repr, settings.served_names))
        print(f"eqr serve: --default-model {settings.default_model!r} is not served here ({served})", file=sys.stderr)
        return 2
    return run(settings)


def _api(args: argparse.Namespace) -> int:
    """Serve the HTTP API over a Redis queue; ``eqr worker`` processes run the model."""
    settings, options = _settings("api", args), _redis_options("api", args)
    if settings is None or options is None:
        return 2
    from eqr.server.api_node import run_api

    return run_api(settings, options)


def _worker(args: argparse.Namespace) -> int:
    """Run the model on jobs from the Redis queue; /metrics and /healthz on ``--metrics-port``."""
    settings, options = _settings("worker", args), _redis_options("worker", args)
    if settings is None or options is None or not _model_readable("worker", settings):
        return 2
    from eqr.server.worker import default_name, run_worker

    return run_worker(
        settings,
        options,
        name=args.name or default_name(),
        prefetch=args.prefetch,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
    )


def _add_redis_options(p: argparse.ArgumentParser) -> None:
    """The flags of the distributed mode (``api``, ``worker``); also ``EQR_REDIS_*`` variables."""
    p.add_argument("--redis", dest="redis_url", help="Redis URL (default redis://127.0.0.1:6379/0, $EQR_REDIS_URL)")
    p.add_argument("--prefix", dest="redis_prefix", help="namespace of the keys (default eqr)")
    p.add_argument("--heartbeat", dest="redis_heartbeat_s", type=float, help="worker heartbeat seconds (default 2)")
    p.add_argument(
        "--claim-idle", dest="redis_claim_idle_s", type=float, help="seconds before a dead worker's jobs move (15)"
    )


def build_parser() -> argparse.ArgumentParser:
    from eqr.server import flags  # Settings (pydantic): torch-free, but not needed to import this module
    from eqr.server.flags import add_request_flags, add_settings_flags

    parser = argparse.ArgumentParser(prog="eqr", description="Equilibrium Reasoner serving and tooling")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (resumes when OUT holds a training state)")
    p.add_argument("--config", required=True, help="run config JSON, e.g. configs/sudoku-small.json")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--cache", default="data/cache", help="where generated puzzle pools are cached")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (overrides the config's train.threads)")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "eval",
        help="accuracy and cost of a model on labelled sets for every depth x breadth x aggregate rule, or for "
        "every named policy (--policies)",
    )
    p.add_argument("--model", help="model folder (default: the bundled model, or $EQR_MODEL)")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        help="labelled set(s) of the model's task: Sudoku puzzle,solution CSV, maze JSON lines",
    )
    p.add_argument("--depth", type=_int_list, help="iteration budgets (default 1,4,16,64; --policies: one, default 64)")
    p.add_argument(
        "--breadth", type=_int_list, help="trajectories per puzzle (default 1,4,16; --policies: the cap, default 16)"
    )
    p.add_argument("--aggregate", type=_rule_list, help="rules (default converged,vote)")
    p.add_argument(
        "--policies",
        action="store_true",
        help="instead of the grid, the named policies: fixed depth x breadth, the paper's protocol (64 x 128, "
        "noise 0.5, learned halting, most-converged), a quorum, breadth on demand, verified mode; the last "
        "line says at what fraction of the paper protocol's iterations the cheapest adaptive policy reaches its "
        "accuracy",
    )
    p.add_argument("--seed", type=int, default=0, help="the request seed of every puzzle (default 0)")
    add_request_flags(p, skip=("depth", "breadth", "aggregate", "seed"))
    p.add_argument("--limit", type=_positive_int, help="use only the first N puzzles of each file")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="engine slots: trajectories per step")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--json", help="write the records to this JSON file")
    p.add_argument("--plot", help="accuracy-vs-depth PNG (default: next to --json, else eval.png)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("solve", help="solve one puzzle")
    p.add_argument(
        "puzzle",
        type=_puzzle_arg,
        help="the puzzle, or a file holding it: Sudoku 81 characters (1-9 givens, '.' or '0' blanks); a maze or "
        "grid its rows, one per line",
    )
    p.add_argument("--model", help="model folder (default: bundled, or $EQR_MODEL); with --server: a model name")
    p.add_argument("--seed", type=int, default=0, help="the request seed (default 0)")
    add_request_flags(p, skip=("seed",))
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--server", metavar="URL", help="solve on a running eqr serve, e.g. http://127.0.0.1:8000")
    p.add_argument("--stream", action="store_true", help="with --server: print the board as it converges")
    p.add_argument("--api-key", help="with --server: API key, sent as a bearer token (default: $EQR_API_KEY)")
    p.set_defaults(func=_solve)
    p = sub.add_parser("convert", help="convert the paper's eqr.pth into a model folder")
    p.add_argument("src", help="the paper's checkpoint (eqr.pth)")
    p.add_argument("out", help="output model folder")
    p.add_argument("--trust", action="store_true", help="allow unpickling SRC (pickle runs code: trusted files only)")
    p.add_argument("--arch", help="paper arch config (JSON/YAML, e.g. all_config.yaml) for a raw state_dict")
    p.add_argument(
        "--seq-len",
        type=_positive_int,
        help="board cells S_in, when neither config.arch's board size nor the training carry gives it",
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser("serve", help="serve the model over HTTP (flags override EQR_* environment variables)")
    add_settings_flags(p, flags.API, flags.ENGINE, flags.COMMON)
    p.set_defaults(func=_serve)

    p = sub.add_parser("api", help="serve the HTTP API over a Redis queue; no model is loaded (workers run it)")
    add_settings_flags(p, flags.API, flags.COMMON)
    p.add_argument(
        "--max-jobs",
        dest="redis_max_jobs",
        type=_positive_int,
        help="unfinished jobs of one model before its new work gets 429 (10000)",
    )
    p.add_argument(
        "--model-memory",
        dest="redis_model_memory_s",
        type=float,
        help="seconds a model whose last worker left stays known: 503 model_unavailable, not 404 (3600)",
    )
    p.add_argument(
        "--unserved-wait",
        dest="redis_unserved_wait_s",
        type=float,
        help="seconds a synchronous request waits while its model has no live worker, then 504 (30)",
    )
    _add_redis_options(p)
    p.set_defaults(func=_api)

    p = sub.add_parser("worker", help="run the model on jobs from a Redis queue (one per GPU)")
    add_settings_flags(p, flags.ENGINE, flags.COMMON)
    _add_redis_options(p)
    p.add_argument("--name", help="consumer name, unique per worker (default: host-pid)")
    p.add_argument("--prefetch", type=int, default=8, help="trajectories taken beyond the free slots (default 8)")
    p.add_argument("--max-deliveries", dest="redis_max_deliveries", type=_positive_int, help="before dead-letter (3)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="interface of /metrics and /healthz")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9100,
        help="port of /metrics and /healthz (default 9100; 0: a free one, logged and advertised in Redis)",
    )
    p.set_defaults(func=_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
