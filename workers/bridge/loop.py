"""The bridge: Redis pub/sub topics in, one Celery task per valid event out.

    connect ─▶ subscribe ─▶ replay the journal since the checkpoint ─▶ serve
       ▲                                                              │
       └──────── lost connection: capped exponential backoff ◀────────┘

Serving drains whatever the socket has (up to a batch), then flushes the batch:
validate, claim, enqueue in one pipelined broker round trip, dead-letter the
rejects. A quiet channel flushes each message at once, a burst flushes in
batches, so latency stays low without a timer.

The checkpoint says "every journal entry up to here is enqueued". It advances
by a marker PING on the subscription: read the journal's last ids, send PING;
when the PONG comes back every message published before the read has been
received, so once those are flushed the checkpoint may move to those ids.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter

import redis
from django.db import DatabaseError
from kombu.exceptions import BatchPublishError, OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields

from .. import envelope
from ..journal import JOURNAL_FIELD, checkpoint_key, heartbeat_key, journal_key
from ..preflight import CredentialsRefused
from . import metrics
from .audit import audit
from .claims import Claims

log = logging.getLogger("workers.bridge")

READY_MESSAGE = "Event bridge ready, listening to topics: %s"
LOG_PAYLOAD_CHARS = 200
# What the broker side raises when Redis goes away mid-enqueue: handled like a
# lost subscription (reconnect, retry the batch), never a crash.
_BrokerError = (BatchPublishError, OperationalError)
JOURNAL_PAGE = 1000


class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s ... 30 s."""

    def __init__(self, first: float = 0.5, cap: float = 30.0):
        self.first, self.cap, self.n = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.n)
        self.n += 1
        return delay

    def reset(self) -> None:
        self.n = 0


class Bridge:
    def __init__(
        self,
        *,
        url: str,
        topics: tuple[str, ...],
        enqueue,
        dead_letter,
        name: str = "bridge",
        batch_size: int = 500,
        max_bytes: int = envelope.DEFAULT_MAX_BYTES,
        claim_pending_ttl: int = 30,
        claim_ttl: int = 7 * 24 * 3600,
        heartbeat_ttl: int = 30,
        poll_timeout: float = 0.25,
        checkpoint_interval: float = 1.0,
        pong_timeout: float | None = None,
        audit_delay: float = 300.0,
        audit_interval: float = 10.0,
        queue_length=None,
        outbox=None,
    ):
        self.url = url
        self.topics = topics
        self.enqueue = enqueue  # list[Event] -> None; raises on broker errors
        self.dead_letter = dead_letter  # list[dict] -> None
        self.name = name
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.heartbeat_ttl = heartbeat_ttl
        self.poll_timeout = poll_timeout
        self.checkpoint_interval = checkpoint_interval
        options = redis_config.connection_options()
        self.pong_timeout = pong_timeout or options["health_check_interval"] + 5
        self.audit_delay = audit_delay
        self.queue_length = queue_length  # topic -> tasks waiting on the broker
        self.audit_interval = audit_interval
        self.outbox = outbox  # .run(client): publishes what the publisher's fast path left (outbox.py)
        self._next_audit = time.monotonic() + audit_interval
        self.shutdown = False
        self.client: redis.Redis | None = None
        self.pubsub = None
        self.sub_client: redis.Redis | None = None
        self.claims = Claims(claim_pending_ttl, claim_ttl)
        self.pending: list[tuple[str, bytes, str]] = []  # (topic, raw, source)
        self._ping: tuple[str, dict[str, bytes], float] | None = None  # marker, last ids, sent at
        self._checkpoint_due: dict[str, bytes] | None = None
        self._next_tick = 0.0
        self._marker = 0
        self._heard_at = 0.0
        self.stats = Counter()

    # --- life cycle -------------------------------------------------------------

    def stop(self, *_):
        """Signal handler: only sets the flag; the loop finishes its batch and exits."""
        self.shutdown = True

    def run(self) -> int:
        backoff = Backoff()
        try:
            while not self.shutdown:
                try:
                    self._connect()
                    backoff.reset()
                    self._serve()
                except CredentialsRefused:
                    raise
                except (redis.AuthenticationError, redis.exceptions.AuthorizationError,
                        redis.exceptions.NoPermissionError) as exc:
                    raise CredentialsRefused(redis_config.credential_error_message(self.url, exc)) from None
                # ResponseError: Redis up but refusing writes (OOM under noeviction,
                # READONLY after a failover, MISCONF on a full disk): wait, retry.
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError,
                        *_BrokerError) as exc:
                    if self.shutdown:
                        break
                    delay = backoff.next()
                    self.stats["reconnects"] += 1
                    metrics.RECONNECTS.inc()
                    metrics.SUBSCRIBED.set(0)
                    log.warning("Lost Redis (%s); %d message(s) in hand, reconnecting in %.1fs",
                                _one_line(exc), len(self.pending), delay)
                    self._disconnect()
                    self._sleep(delay)
            self._drain_on_shutdown()
            return 0
        finally:
            self._disconnect()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.shutdown and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def _connect(self) -> None:
        self.client = redis_config.client(self.url)
        self.client.ping()  # credentials are checked here, before subscribing
        self.claims.bind(self.client)
        # No silent reconnects on the subscription: a gap must reach us, so the
        # journal can fill it.
        # Keep the client referenced: when it is garbage-collected it closes its
        # pool, and the subscription would be silently re-established.
        self.sub_client = redis_config.client(self.url, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.sub_client.pubsub()
        self.pubsub.subscribe(*self.topics)
        confirmed: set[str] = set()
        deadline = time.monotonic() + 10
        while confirmed != set(self.topics):
            if time.monotonic() > deadline:
                raise redis.TimeoutError("no subscribe confirmation within 10s")
            msg = self.pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                confirmed.add(msg["channel"].decode())
            elif msg["type"] == "message":
                self._take(msg)
        self._ping = None
        self._checkpoint_due = None
        self._heard_at = time.monotonic()
        metrics.SUBSCRIBED.set(1)
        log.info(READY_MESSAGE, list(self.topics))
        if self.pending:
            self.flush()  # what was in hand when the last connection broke
        self._replay_journal()
        self._heartbeat()

    def _disconnect(self) -> None:
        for closable in (self.pubsub, self.sub_client, self.client):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
                pass
        self.pubsub = None
        self.sub_client = None
        self.client = None

    def _drain_on_shutdown(self) -> None:
        """Finish what is in hand: read what the socket already holds, flush it."""
        if self.pubsub is None:
            return
        try:
            while len(self.pending) < 100_000:
                msg = self.pubsub.get_message(timeout=0)
                if msg is None:
                    break
                self._take(msg)
            self.flush()
            self.claims.flush()
            self._write_checkpoint_if_due()
            log.info("Event bridge stopped cleanly: %s", dict(self.stats))
        except (redis.RedisError, OSError, *_BrokerError) as exc:
            log.error("Could not flush %d message(s) on shutdown (%s); journaled ones are replayed on the next start",
                      len(self.pending), _one_line(exc))

    # --- serving --------------------------------------------------------------

    def _serve(self) -> None:
        get = self.pubsub.get_message
        while not self.shutdown:
            msg = get(timeout=0)
            if msg is None:
                self.claims.flush()  # idle: confirm the last batch's claims before waiting
                msg = get(timeout=self.poll_timeout)
            if msg is not None:
                self._heard_at = time.monotonic()
            while msg is not None:
                self._take(msg)
                if len(self.pending) >= self.batch_size:
                    break
                msg = get(timeout=0)
            if self.pending:
                self.flush()
            if time.monotonic() >= self._next_tick:
                self._tick()

    def _take(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "message":
            self.pending.append((msg["channel"].decode(), msg["data"], "live"))
        elif kind == "pong":
            self._on_pong(msg["data"])
        elif kind in ("unsubscribe", "subscribe"):
            # Only we subscribe; a subscribe/unsubscribe here means the
            # subscription was reset under us. Reconnect and replay.
            raise redis.ConnectionError(f"unexpected {kind} for {msg['channel']!r}")

    def flush(self) -> None:
        """Validate, claim, enqueue and dead-letter everything in hand.

        On a broker or Redis error the batch stays in hand and is retried after
        reconnecting; claims this bridge already holds let it through again.
        """
        if not self.pending:
            return
        started = time.perf_counter()
        batch = self.pending
        events: dict[str, envelope.Event] = {}
        rejects: list[dict] = []
        received: Counter = Counter()
        for topic, raw, source in batch:
            received[(topic, source)] += 1
            try:
                event = envelope.parse(topic, raw, self.max_bytes)
            except envelope.InvalidEvent as exc:
                rejects.append(self._reject(topic, raw, exc))
                continue
            events.setdefault(event.id, event)  # live + replay in one batch
        ids = list(events)
        owned = self.claims.take(ids)
        to_send = [events[i] for i, ok in zip(ids, owned) if ok]
        if to_send:
            self.enqueue(to_send)
            self.claims.confirm([e.id for e in to_send])
        if rejects:
            self._store_rejects(rejects)
        self.pending = []
        # Bookkeeping, once per batch.
        sent = Counter(e.topic for e in to_send)
        skipped = Counter(events[i].topic for i, ok in zip(ids, owned) if not ok)
        for (topic, source), n in received.items():
            metrics.RECEIVED.labels(topic, source).inc(n)
        for topic, n in sent.items():
            metrics.ENQUEUED.labels(topic).inc(n)
        for topic, n in skipped.items():
            metrics.DUPLICATES.labels(topic).inc(n)
        self.stats["received"] += len(batch)
        self.stats["enqueued"] += len(to_send)
        self.stats["duplicates"] += len(ids) - len(to_send)
        self.stats["rejected"] += len(rejects)
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.ENQUEUE_SECONDS.observe(time.perf_counter() - started)
        self._write_checkpoint_if_due()

    def _reject(self, topic: str, raw: bytes, exc: envelope.InvalidEvent) -> dict:
        preview = raw[:LOG_PAYLOAD_CHARS].decode("utf-8", "backslashreplace")
        log.warning("Rejected message (%s: %s): %s%s", exc.reason, exc.detail[:300], preview,
                    "…" if len(raw) > LOG_PAYLOAD_CHARS else "", extra=event_fields(topic, None, exc.event_id))
        metrics.REJECTED.labels(topic, exc.reason).inc()
        return {"topic": topic, "stage": "bridge", "reason": exc.reason, "detail": exc.detail,
                "payload": raw, "event_id": exc.event_id}

    def _store_rejects(self, rejects: list[dict]) -> None:
        try:
            self.dead_letter(rejects)
        except Exception as exc:  # noqa: BLE001 - the database is down; never crash on a message
            log.error("Could not store %d dead letter(s) (%s); they are in the log lines above",
                      len(rejects), _one_line(exc))

    # --- journal, checkpoint, heartbeat ----------------------------------------

    def _last_ids(self) -> dict[str, bytes]:
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.xrevrange(journal_key(topic), count=1)
        return {t: r[0][0] for t, r in zip(self.topics, pipe.execute()) if r}

    def _replay_journal(self) -> None:
        """Enqueue what the journal holds past our checkpoint (claims skip
        what was enqueued already), then move the checkpoint to the end."""
        last = self._last_ids()
        for topic, end in last.items():
            start = self.client.get(checkpoint_key(self.name, topic)) or b"0-0"
            if start == end:
                continue
            first = self.client.xrange(journal_key(topic), count=1)
            if start != b"0-0" and first and _id_lt(start, first[0][0]):
                log.error("Journal of %s was trimmed past the checkpoint; events published while the bridge was "
                          "away longer than EVENTS_JOURNAL_MAXLEN covers may be lost", topic,
                          extra=event_fields(topic))
            replayed = 0
            cursor = b"(" + start
            while True:
                entries = self.client.xrange(journal_key(topic), min=cursor, max=end, count=JOURNAL_PAGE)
                if not entries:
                    break
                for entry_id, fields in entries:
                    self.pending.append((topic, fields.get(JOURNAL_FIELD, b""), "journal"))
                replayed += len(entries)
                self.flush()
                cursor = b"(" + entries[-1][0]
            if replayed:
                metrics.REPLAYED.labels(topic).inc(replayed)
                self.stats["replayed"] += replayed
                log.info("Replayed %d journal entries of %s since checkpoint %s", replayed, topic, start.decode(),
                         extra=event_fields(topic))
            self.client.set(checkpoint_key(self.name, topic), end)

    def _tick(self) -> None:
        now = time.monotonic()
        self._next_tick = now + self.checkpoint_interval
        if self._ping is not None:
            # Behind a backlog the PONG waits its turn: only silence (nothing
            # read since the PING) means a dead connection.
            if now - max(self._ping[2], self._heard_at) > self.pong_timeout:
                raise redis.TimeoutError(f"no PONG on the subscription for {self.pong_timeout:.0f}s")
        else:
            last = self._last_ids()
            self._marker += 1
            marker = f"ckpt-{self._marker}"
            self.pubsub.ping(marker)
            self._ping = (marker, last, now)
        self._heartbeat()
        if self.outbox is not None:
            self.outbox.run(self.client)
        if now >= self._next_audit:
            self._next_audit = now + self.audit_interval
            self._audit()

    def _audit(self) -> None:
        try:
            self.stats["recovered"] += audit(self.client, self.name, self.topics, self.enqueue, self.audit_delay,
                                             self.queue_length or self.client.llen)
        except DatabaseError as exc:
            log.warning("Audit skipped: database unavailable (%s)", _one_line(exc))

    def _on_pong(self, data: bytes) -> None:
        if self._ping is None or data.decode() != self._ping[0]:
            return  # redis-py's own health-check PONG
        # Every message published before the marker is now in hand or flushed.
        self._checkpoint_due = self._ping[1]
        self._ping = None
        if not self.pending:
            self._write_checkpoint_if_due()

    def _write_checkpoint_if_due(self) -> None:
        due = self._checkpoint_due
        if due is None or self.pending:
            return
        self._checkpoint_due = None
        if due:
            pipe = self.client.pipeline(transaction=False)
            for topic, last_id in due.items():
                pipe.set(checkpoint_key(self.name, topic), last_id)
            pipe.execute()
            now_ms = time.time() * 1000
            for topic, last_id in due.items():
                metrics.JOURNAL_LAG.labels(topic).set(max(0.0, (now_ms - int(last_id.split(b"-")[0])) / 1000))

    def _heartbeat(self) -> None:
        beat = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "topics": list(self.topics)}
        self.client.set(heartbeat_key(self.name), json.dumps(beat), ex=self.heartbeat_ttl)


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _id_lt(a: bytes, b: bytes) -> bool:
    ams, aseq = (int(x) for x in a.split(b"-"))
    bms, bseq = (int(x) for x in b.split(b"-"))
    return (ams, aseq) < (bms, bseq)
