"""What the serving engine and the offline tools share: slot pool, convergence tracker, runner, steppers, rollouts.

It sits above the model (it drives ``EqRNetwork`` through the step contract of
:mod:`eqr.model.step`) and below the server and the offline tools (evaluation, ``eqr solve``,
training probes), so that "one iteration", "converged" and "trajectory k of seed s" mean the same
in all of them.
"""
