"""``make bench``: the event pipeline measured against the loop it replaces.

One invocation starts its own password-protected redis-server (never the
machine's shared one), its own SQLite file and PostgreSQL database, and runs
side by side, on the same machine and the same event stream:

  publisher      journal.publish (MULTI: XADD + PUBLISH), pipelined, nobody listening
  old loop       the seed's design: one pub/sub process running the handlers inline
  naive bridge   pub/sub -> one ``task.apply_async()`` per event
  our bridge     ``python -m workers.bridge`` as shipped (claims, journal, metrics)
  celery-plain   pub/sub -> one ``apply_async()`` per event (bench/naive.py) onto a plain
                 Celery app at its defaults (bench/plain_celery.py: early ack, no task
                 events, default prefetch and queue), ``worker -c 2 -l WARNING`` -> SQLite (WAL)
  dramatiq       pub/sub -> one ``actor.send()`` per event onto Dramatiq's RedisBroker
                 (bench/dramatiq_app.py, one actor and queue per topic, default
                 middleware: acks after the actor, Retries), ``dramatiq -p 2 -t 1`` -> SQLite (WAL)
  e2e-sqlite     publisher -> our bridge -> ``celery -A workers worker`` in the
                 layout ``E2E_LAYOUT`` (bench/harness.py) -> SQLite (WAL)
  e2e-sqlite-noevents  the same with ``CELERY_WORKER_SEND_TASK_EVENTS=False``
  e2e-postgres   the same as e2e-sqlite on PostgreSQL
  topology       e2e-sqlite once per ``--layouts`` entry (rows ``e2e-sqlite@<layout>``):
                 ``prefork-cN`` one worker ``-c N``; ``prefork-cN-prefetchM`` the same
                 with ``CELERY_WORKER_PREFETCH_MULTIPLIER=M``; ``Kx-cN`` K workers
                 ``-c N`` (node names ``wI@%h``); ``solo-xK`` K workers ``-P solo``;
                 a ``-warning`` suffix runs the workers at ``-l WARNING`` instead of
                 the Procfile's INFO (the cost of the per-event log lines)

plain Celery, Dramatiq and every e2e row run the same handler functions
through ``workers.handlers.base.apply_once`` on the same seeded database, so
they differ only in how an event travels from pub/sub to the handler.

How each figure is measured (also written into every result file):

* Publish time: the publisher process (bench.publisher) reads the clock right
  before it sends a pipelined batch and records that time for every event of
  the batch, keyed by the event's index; the event id stays the contract
  envelope's ``id``. Paced phases send a batch of 1 (500/s) or 20 (20,000/s)
  per slot, so their timestamps are exact to one round trip.
* Enqueued: the measuring process pops the topic queues (``jobs``,
  ``notifications``, ``chat``, ``payments`` — the Redis lists kombu LPUSHes
  task messages onto) in pipelined ``RPOP key 2000`` round trips, blocking in
  ``BRPOP`` on the four when they are empty; it decodes ``headers.id``
  (= event id) of each Celery message and stamps it with the time the reply
  arrived: an upper bound on the enqueue time, late by at most one drain
  cycle. No worker runs in these rows, so nothing else takes messages away.
* Effect committed: SQLite — the measuring process polls
  ``core_processedevent`` by rowid every millisecond (SQLite has one writer at
  a time, so rowid order is commit order); PostgreSQL — an AFTER INSERT
  trigger in the bench's own database calls ``pg_notify``, which PostgreSQL
  delivers only when the transaction commits. Both are upper bounds (poll
  period, or notification delivery); the JSON also has the lower bound from
  ``handled_at`` (insert time of the handled mark, before the commit).
* events/s: unique events delivered in the full-speed phase divided by (last
  delivery − first publish). Latency percentiles come from the paced phases
  (500 events/s for every row but the topology rows, 20,000 events/s for our
  bridge).
* The rows that commit effects (old loop, plain Celery, Dramatiq, e2e-*) also
  have ``lat200`` (paced 200 events/s, batch 1, before the full-speed phase)
  and ``half`` (after it, paced at half the events/s this run measured in its
  full-speed phase, kept within 20 and 10,000 events/s, and to at most 6 s
  of events): effect committed
  p50 / p95 / p99 for both; "@half" is the latency of a pipeline loaded to
  half of what it can drain.
* CPU ms per event: over the full-speed phase, the CPU time (user + system,
  psutil) of every process of the row — the bridge or loop, the workers with
  their pool children, redis-server and the publisher; not the harness —
  divided by events delivered.
* Redis commands per event: ``INFO commandstats`` before and after the
  full-speed phase, the sum of ``calls`` over all commands, divided by events
  delivered; the harness' own commands (INFO, CLIENT LIST from the buffer
  sampler and, in the rows without a worker, the queue drainer's RPOP/BRPOP)
  are left out. The JSON has the top 5 commands per event of each row.
* Worker topology: events/s of each layout, its ratio to ``prefork-c2`` (per
  run, same run), CPU ms per event and effect p99 at 200/s and at half rate.
* Burst (``--burst N``): after the rows, one fresh run each of the old loop and
  e2e-sqlite (and plain Celery / Dramatiq when selected): a warm-up, then N
  events published as fast as possible; seconds from the first publish to the
  last effect committed, and the old loop's seconds ÷ the row's (speed-up).
  A line every ~5 s tells how many have committed so far.
* Peak RSS: VmHWM of the bridge (or loop) process from /proc, read after each phase.
* Reconnects: "Lost Redis" lines in our bridge's log (and its Prometheus
  counter); for the old loop and the bench/naive.py bridges, redis-py's silent
  re-subscriptions (a ``subscribe`` confirmation after the first four).
* Lost: published minus unique event ids delivered (enqueued, or committed).

Every figure is the median over ``--runs`` runs; each run starts every
process, Redis and the database tables afresh.
"""
