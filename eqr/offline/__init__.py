"""Offline tools (``eqr eval``, ``eqr solve`` without a server, the benchmarks): the serving engine,
driven in-process.

They sit above the engine (:mod:`eqr.server.engine`) and below the CLI, so "one iteration",
"converged", every compute policy and "trajectory k of seed s" mean the same offline and online.
"""
