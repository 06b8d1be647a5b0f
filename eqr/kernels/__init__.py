"""Fused kernels for the EqR iteration: the leaf layer, importing nothing else of the project.

``reference`` (plain torch, the semantics), ``triton_ops`` (GPU kernels, imported lazily),
``dispatch`` (one entry point per op), ``rng`` (counter-based random numbers and the one
trajectory-seed derivation) and ``ndtri``. The whole-iteration steppers built on them live in
:mod:`eqr.runtime`.
"""
