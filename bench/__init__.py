"""``make bench``: the event pipeline measured against the loop it replaces.

One invocation starts its own password-protected redis-server (never the
machine's shared one), its own SQLite file and PostgreSQL database, and runs
side by side, on the same machine and the same event stream:

  publisher      journal.publish (MULTI: XADD + PUBLISH), pipelined, nobody listening
  old loop       the seed's design: one pub/sub process running the handlers inline
  naive bridge   pub/sub -> one ``task.apply_async()`` per event
  our bridge     ``python -m workers.bridge`` as shipped (claims, journal, metrics)
  e2e-sqlite     publisher -> our bridge -> ``celery -A workers worker -c 2`` -> SQLite (WAL)
  e2e-postgres   the same on PostgreSQL

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
  (500 events/s for every row, 20,000 events/s for our bridge).
* Peak RSS: VmHWM of the bridge (or loop) process from /proc, read after each phase.
* Reconnects: "Lost Redis" lines in our bridge's log (and its Prometheus
  counter); for the old loop and the naive bridge, redis-py's silent
  re-subscriptions (a ``subscribe`` confirmation after the first four).
* Lost: published minus unique event ids delivered (enqueued, or committed).

Every figure is the median over ``--runs`` runs; each run starts every
process, Redis and the database tables afresh.
"""
