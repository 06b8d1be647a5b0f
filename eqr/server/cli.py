"""The ``eqr`` command line: train, eval, convert, solve, serve."""

from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from eqr.model.train import train

    train(args.config, args.out, cache_dir=args.cache)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eqr", description="Equilibrium Reasoner serving and tooling")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (resumes when OUT holds a training state)")
    p.add_argument("--config", required=True, help="run config JSON, e.g. configs/sudoku-small.json")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--cache", default="data/cache", help="where generated puzzle pools are cached")
    p.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
