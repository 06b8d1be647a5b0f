"""``eqr worker --redis URL``: an engine per served model, fed from those models' jobs streams.

The worker is the in-process :class:`~eqr.server.broker.local.LocalBroker` (one engine thread per
``--model`` folder, futures, event queues) plus pumps between it and Redis, one module each:

- :mod:`.intake`: one ``XREADGROUP`` over the streams of its models (``P:jobs:{model}``) for as many
  jobs as each has room (its free slots plus ``prefetch``), ``XAUTOCLAIM`` on each for entries a dead
  worker left pending, dead letters after ``max_deliveries``;
- :mod:`.lease`: heartbeats that advertise every model it serves (the API node's model list is the
  union of these) and renew the lease on the entries it computes, cancellation (channel and keys),
  and handing entries back at shutdown;
- :mod:`.outbox`: events and results published in order (``STORE``: first result wins, announce,
  ack, delete), retried until Redis answers: at-least-once delivery, exactly one result;
- :mod:`.assignments`: what it holds, against each model's admission limit.

Admission has one limit per layer, each for its own reason: the API node's ``max_jobs`` bounds each
model's unfinished jobs in Redis (memory, and a fast 429); a worker's room for a model (that engine's
slots + ``prefetch``) bounds what it takes from that model's stream, so the rest stays with workers
that have slots free; each engine's ``max_queue`` bounds its own queue. Redis health is one
:class:`RedisHealth` per process.

On SIGTERM it stops taking work, lets running jobs finish (``drain_timeout_s``), and hands back the
rest with their idle time set past ``claim_idle_s`` so another worker takes them over at once.
"""

from eqr.server.worker.core import Worker, default_name, run_worker

__all__ = ["Worker", "default_name", "run_worker"]
