"""Fused kernels and fast steps for the EqR iteration.

``reference`` (plain torch, the semantics), ``triton_ops`` (GPU kernels, imported lazily),
``dispatch`` (one entry point per op), ``cpu_step`` / ``graph_step`` (whole-iteration steppers
with ``EqRNetwork.iterate``'s signature) and ``step.make_step``, which picks the fastest for a model.
"""
