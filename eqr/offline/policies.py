"""Named compute policies for evaluation, and how the adaptive ones compare with the paper's protocol.

One list, which ``eqr eval --policies`` and ``benchmarks/frontier.py`` both run: fixed depth × breadth
(pure EqR, every trajectory runs), the paper's protocol, and the adaptive policies that spend
according to the puzzle (a quorum, breadth on demand, verified restarts within a budget). A policy is
only request fields (the engine's own policies, ``eqr.server.engine.policies``, do the work), so a
row measures exactly what a client sending those fields gets.

:func:`reaching_reference` is the frontier's closing question: at what fraction of the paper
protocol's iterations does the cheapest adaptive policy reach its accuracy?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eqr.server.jobs import PRESETS


@dataclass(frozen=True)
class Policy:
    """A name, whether its compute adapts to the puzzle, and the request fields that select it (``None``:
    the model's default, e.g. verified mode's restart schedule instead of a depth)."""

    name: str
    adaptive: bool
    fields: Mapping[str, Any] = field(default_factory=dict)


def grid(depths: Sequence[int], breadths: Sequence[int], rules: Sequence[str]) -> list[Policy]:
    """Every fixed depth × breadth × aggregate cell, depth-major (``eqr eval``'s default table)."""
    return [
        Policy(f"{d} x {b} {rule}", False, {"depth": d, "breadth": b, "aggregate": rule})
        for d in sorted(set(depths))
        for b in sorted(set(breadths))
        for rule in rules
    ]


def paper(depth: int | None = None, breadth: int | None = None) -> Policy:
    """The paper's Sudoku protocol (``PRESETS["paper"]``: depth 64 × breadth 128, noise 0.5, learned
    halting, most-converged answer) as explicit fields rather than the preset's name: a model folder
    takes the preset only when it was trained for it, but any model can be measured under the protocol.
    ``depth`` and ``breadth`` shrink it for tests and quick looks; the name says the size, so a shrunk
    row is never read as the real one."""
    fields = {**PRESETS["paper"]}
    fields["depth"] = depth or fields["depth"]
    fields["breadth"] = breadth or fields["breadth"]
    return Policy(f"paper {fields['depth']} x {fields['breadth']}", False, fields)


def named(depth: int, cap: int, reference: Policy | None = None) -> list[Policy]:
    """The frontier's policies at ``depth`` with breadth up to ``cap``, and ``reference`` (default: the
    paper's protocol at its own size): fixed ones first, then the adaptive ones."""
    fixed = [Policy(f"fixed {depth} x 1", False, {"depth": depth, "breadth": 1})]
    fixed += [
        Policy(f"fixed {depth} x {b} vote", False, {"depth": depth, "breadth": b, "aggregate": "vote"})
        for b in sorted({min(4, cap), cap})
    ]
    fixed += [
        Policy(f"fixed {depth} x {cap} converged", False, {"depth": depth, "breadth": cap, "aggregate": "converged"})
    ]
    fixed += [reference or paper()]
    quorum = min(3, cap)
    adaptive = [
        Policy(
            f"fixed {depth} x {cap} quorum {quorum}",
            True,
            {"depth": depth, "breadth": cap, "aggregate": "vote", "quorum": quorum},
        )
    ]
    adaptive += [
        Policy(
            f"on demand <= {cap}, quorum {q}",
            True,
            {"depth": depth, "breadth": cap, "breadth_mode": "on_demand", "quorum": q},
        )
        for q in sorted({min(2, cap), quorum})
    ]
    # verified mode keeps each model's restart schedule (its verify_depth) rather than running to depth
    adaptive += [
        Policy(f"verified, budget {n}", True, {"verify": True, "budget": n, "depth": None})
        for n in (16 * depth, 32 * depth)
    ]
    return fixed + adaptive


def reaching_reference(
    records: Sequence[Mapping[str, Any]], reference: Mapping[str, Any]
) -> tuple[Mapping[str, Any], float] | None:
    """The cheapest adaptive record that reaches ``reference``'s exact accuracy, and its mean iterations
    spent as a fraction of the reference's; None when no adaptive record reaches it.

    Records carry ``policy``, ``adaptive``, ``exact_accuracy``, ``iterations_spent`` (mean per puzzle)
    and ``puzzles``, all on the same puzzles. *Reaches* means at most one puzzle fewer solved: every
    policy runs the same puzzles with the same seeds, so accuracies differ in whole puzzles, and one
    puzzle is the least a change of seed moves them by (a fixed point tolerance would demand an exact
    tie on 40 puzzles and forgive ten on 1,000). Ties in cost go to the first listed."""
    if reference["iterations_spent"] <= 0:
        raise ValueError(f"the reference {reference['policy']!r} spent no iterations")

    def solved(r: Mapping[str, Any]) -> int:
        return round(r["exact_accuracy"] * r["puzzles"])

    reaching = [r for r in records if r["adaptive"] and solved(r) >= solved(reference) - 1]
    if not reaching:
        return None
    best = min(reaching, key=lambda r: r["iterations_spent"])
    return best, best["iterations_spent"] / reference["iterations_spent"]


def reference_line(records: Sequence[Mapping[str, Any]], reference: Mapping[str, Any]) -> str:
    """The frontier's last line: :func:`reaching_reference` in words."""
    target = (
        f"{reference['policy']}'s accuracy ({reference['exact_accuracy']:.1%} at "
        f"{reference['iterations_spent']:.0f} iterations a puzzle)"
    )
    found = reaching_reference(records, reference)
    if found is None:
        return f"no adaptive policy reaches {target} within one puzzle"
    best, fraction = found
    return (
        f"best adaptive policy {best['policy']} ({best['exact_accuracy']:.1%}) reaches {target} at {fraction:.3g} "
        f"of its iterations ({best['iterations_spent']:.0f} a puzzle)"
    )
