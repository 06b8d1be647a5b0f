"""``eqr worker --redis URL``: one engine fed from the shared jobs stream.

The worker is the in-process :class:`~eqr.server.broker.local.LocalBroker` (model, engine thread,
futures, event queues) plus pumps between it and Redis, one module each:

- :mod:`.intake`: ``XREADGROUP`` for as many jobs as there is room (free slots plus ``prefetch``),
  ``XAUTOCLAIM`` for entries a dead worker left pending, dead letters after ``max_deliveries``;
- :mod:`.lease`: heartbeats that renew the lease on the entries it computes and advertise it,
  cancellation (channel and keys), and handing entries back at shutdown;
- :mod:`.outbox`: events and results published in order (``STORE``: first result wins, announce,
  ack, delete), retried until Redis answers: at-least-once delivery, exactly one result;
- :mod:`.assignments`: what it holds, against its admission limit.

Admission has one limit per layer, each for its own reason: the API node's ``max_jobs`` bounds the
unfinished jobs in Redis (memory, and a fast 429); a worker's room (slots + ``prefetch``) bounds what
it takes from the shared stream, so the rest stays with workers that have slots free; the engine's
``max_queue`` bounds its own queue. Redis health is one :class:`RedisHealth` per process.

On SIGTERM it stops taking work, lets running jobs finish (``drain_timeout_s``), and hands back the
rest with their idle time set past ``claim_idle_s`` so another worker takes them over at once.
"""

from eqr.server.worker.core import Worker, default_name, run_worker

__all__ = ["Worker", "default_name", "run_worker"]
