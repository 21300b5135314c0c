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

An event whose claim another bridge holds as *pending* is not proven enqueued:
that bridge may have died holding it. Such events stay *unresolved* in hand,
are asked about again every second, and are enqueued here once the claim has
expired (``EVENTS_CLAIM_PENDING_TTL``); until then no checkpoint moves past
them, so a restart replays them instead of skipping them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass

import msgspec
import redis
from django.db import DatabaseError
from kombu.exceptions import BatchPublishError, OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from e_clean_backend import redis_config
from e_clean_backend.logging import event_fields

from .. import envelope
from ..journal import JOURNAL_FIELD, checkpoint_key, claim_key, heartbeat_key, journal_key
from ..preflight import CredentialsRefused
from . import metrics
from .audit import audit
from .claims import DONE, HELD, MINE, Claims

log = logging.getLogger("workers.bridge")

READY_MESSAGE = "Event bridge ready, listening to topics: %s"
LOG_PAYLOAD_CHARS = 200
# What the broker side raises when Redis goes away mid-enqueue: handled like a
# lost subscription (reconnect, retry the batch), never a crash.
_BrokerError = (BatchPublishError, OperationalError)
JOURNAL_PAGE = 1000
_AUTH_ERRORS = (redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError)
_encode = msgspec.msgpack.Encoder().encode  # deterministic for a Struct, and the cheapest
# Control characters (C0, DEL, C1) and Unicode line separators: in a log line
# they would let a payload forge lines or drive the terminal (ESC).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7f, 0xa0))}
_CONTROL.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def printable(text: str) -> str:
    """``text`` with control characters escaped, safe in one log line."""
    return text.translate(_CONTROL)


def digest(event: envelope.Event) -> str:
    """The event's content (topic included), canonical: an identical re-send
    matches whatever its JSON formatting, a reused id with other content does not."""
    return hashlib.blake2b(_encode(event), digest_size=8).hexdigest()


@dataclass
class Unresolved:
    """An event whose claim another bridge holds as pending."""

    event: envelope.Event
    digest: str
    raw: bytes
    gen: int  # checkpoint generation it was seen in: no candidate from then on is written before it resolves
    due: float  # when to ask about its claim again


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
        claim_pending_ttl: int = 10,
        claim_ttl: int = 7 * 24 * 3600,
        heartbeat_ttl: int = 30,
        poll_timeout: float = 0.25,
        checkpoint_interval: float = 1.0,
        pong_timeout: float | None = None,
        audit_delay: float = 300.0,
        audit_interval: float = 10.0,
        broker_url: str | None = None,
        accepted_maxlen: int = 100_000,
        outbox=None,
    ):
        self.url = url
        # The broker may be another Redis (CELERY_BROKER_URL): its queues and
        # kombu's unacked hash are read from there, and its refusals named so.
        self.broker_url = broker_url or url
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
        self.audit_interval = audit_interval
        self.outbox = outbox  # .run(client): publishes what the publisher's fast path left (outbox.py)
        self._next_audit = time.monotonic() + audit_interval
        self.shutdown = False
        self.client: redis.Redis | None = None
        self.pubsub = None
        self.sub_client: redis.Redis | None = None
        self.broker: redis.Redis | None = None
        self.claims = Claims(claim_pending_ttl, claim_ttl, accepted_maxlen)
        self.recheck_interval = min(1.0, claim_pending_ttl / 2)
        self.pending: list[tuple[str, bytes, str]] = []  # (topic, raw, source)
        self.unresolved: dict[str, Unresolved] = {}
        self._ping: tuple[str, dict[str, bytes], float] | None = None  # marker, last ids, sent at
        # Checkpoints proven by a PONG or a replay, oldest first, each with its
        # generation; written once no unresolved event of that generation or
        # older is left (see Unresolved.gen).
        self._candidates: list[tuple[int, dict[str, bytes]]] = []
        self._gen = 0
        self._checkpoints: dict[str, bytes] = {}  # as last written or read
        self._had_state = False  # this process wrote a checkpoint: Redis had our state
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
                except _AUTH_ERRORS as exc:
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
        self.broker = self.client if self.broker_url == self.url else redis_config.client(self.broker_url)
        self._check_broker()
        self.claims.bind(self.client)
        self._notice_lost_state()
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
        self._candidates = []  # the replay below proves a newer one
        self._heard_at = time.monotonic()
        metrics.SUBSCRIBED.set(1)
        log.info(READY_MESSAGE, list(self.topics))
        if self.pending:
            self.flush()  # what was in hand when the last connection broke
        self._replay_journal()
        self._heartbeat()

    def _disconnect(self) -> None:
        for closable in (self.pubsub, self.sub_client, self.broker, self.client):
            try:
                if closable is not None:
                    closable.close()
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
                pass
        self.pubsub = None
        self.sub_client = None
        self.broker = None
        self.client = None

    def _check_broker(self) -> None:
        """Credentials of the broker, named as what to fix: with its own
        CELERY_BROKER_URL, REDIS_PASSWORD has nothing to do with it."""
        if self.broker is self.client:
            return
        try:
            self.broker.ping()
        except _AUTH_ERRORS as exc:
            raise CredentialsRefused(self._broker_refused(exc)) from None

    def _broker_refused(self, exc: BaseException) -> str:
        if self.broker_url == self.url:
            return redis_config.credential_error_message(self.url, exc)
        return (f"The broker Redis at {redis_config.redact(self.broker_url)} refused the connection credentials "
                f"({_one_line(exc)}): fix the user/password in CELERY_BROKER_URL, the broker's own URL")

    def _enqueue(self, events: list[envelope.Event]) -> None:
        try:
            self.enqueue(events)
        except Exception as exc:
            if _is_auth_error(exc):
                raise CredentialsRefused(self._broker_refused(exc)) from None
            raise

    def _notice_lost_state(self) -> None:
        """A Redis that came back empty (no persistence) lost the journal, the
        claims and our checkpoints: replay cannot recover what was in flight.
        Say so once, loudly, and count it."""
        if not self._had_state or not (self._checkpoints or self.claims.last_confirmed):
            return
        pipe = self.client.pipeline(transaction=False)
        for topic in self._checkpoints:
            pipe.exists(checkpoint_key(self.name, topic))
        if self.claims.last_confirmed:
            pipe.exists(claim_key(self.claims.last_confirmed))
        for topic in self.topics:
            pipe.xlen(journal_key(topic))
        found = pipe.execute()
        n = len(found) - len(self.topics)
        if any(found[:n]):
            return
        self._had_state = False
        self._checkpoints = {}
        metrics.REDIS_STATE_LOST.inc()
        self.stats["redis_state_lost"] += 1
        log.error("Redis lost its data: this bridge's checkpoints and claims are gone (journals now hold %d entries); "
                  "it restarted without persistence or was flushed. Events in flight before the restart (queued "
                  "tasks, journal entries not yet enqueued) may be lost: turn on AOF (appendonly yes)",
                  sum(found[n:]))

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
            self._recheck_unresolved(force=True)
            self.claims.flush()
            self._write_checkpoint_if_due()
            if self.unresolved:
                log.warning("%d event(s) still claimed by another bridge (pending) at shutdown; the checkpoint stays "
                            "before them, so the next start looks at them again", len(self.unresolved))
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
        Every message read ends as exactly one of: enqueued, duplicate,
        rejected (dead letter), or unresolved until another bridge's pending
        claim on it is done or expired.
        """
        if not self.pending:
            return
        started = time.perf_counter()
        batch = self.pending
        events: dict[str, tuple[envelope.Event, str, bytes]] = {}
        rejects: list[dict] = []
        received: Counter = Counter()
        duplicates: Counter = Counter()
        unresolved = self.unresolved
        for topic, raw, source in batch:
            received[(topic, source)] += 1
            try:
                event = envelope.parse(topic, raw, self.max_bytes)
            except envelope.InvalidEvent as exc:
                rejects.append(self._reject(topic, raw, exc))
                continue
            mine = digest(event)
            seen = events.get(event.id)
            if seen is None and event.id in unresolved:
                held = unresolved[event.id]
                seen = (held.event, held.digest, held.raw)
            if seen is None:
                events[event.id] = (event, mine, raw)
            elif seen[1] == mine:
                duplicates[topic] += 1  # live + replay, or a re-send, in one batch
            else:
                rejects.append(self._conflict(event, raw, mine, seen[1]))
        outcomes = self.claims.take([(i, d, e.topic, raw) for i, (e, d, raw) in events.items()]) if events else []
        to_send: list[envelope.Event] = []
        confirm: list[tuple[str, str]] = []
        due = time.monotonic() + self.recheck_interval
        for (event, mine, raw), outcome in zip(events.values(), outcomes):
            if outcome == MINE:
                to_send.append(event)
                confirm.append((event.id, mine))
            elif outcome == DONE:
                duplicates[event.topic] += 1
            elif outcome == HELD:
                unresolved[event.id] = Unresolved(event, mine, raw, self._gen, due)
            else:
                rejects.append(self._conflict(event, raw, mine, outcome.decode()))
        if to_send:
            self._enqueue(to_send)
            self.claims.confirm(confirm)
            self._had_state = True
        if rejects:
            self._store_rejects(rejects)
        self.pending = []
        # Bookkeeping, once per batch.
        for (topic, source), n in received.items():
            metrics.RECEIVED.labels(topic, source).inc(n)
        self._count(to_send, duplicates)
        self.stats["received"] += len(batch)
        self.stats["rejected"] += len(rejects)
        metrics.UNRESOLVED.set(len(unresolved))
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.ENQUEUE_SECONDS.observe(time.perf_counter() - started)
        self._write_checkpoint_if_due()

    def _count(self, sent: list[envelope.Event], duplicates: Counter) -> None:
        for topic, n in Counter(e.topic for e in sent).items():
            metrics.ENQUEUED.labels(topic).inc(n)
        for topic, n in duplicates.items():
            metrics.DUPLICATES.labels(topic).inc(n)
        self.stats["enqueued"] += len(sent)
        self.stats["duplicates"] += sum(duplicates.values())

    def _recheck_unresolved(self, force: bool = False) -> None:
        """Ask again about events another bridge held as pending: done means a
        duplicate, a claim that expired is ours now and the event is enqueued."""
        if not self.unresolved:
            return
        now = time.monotonic()
        due = [u for u in self.unresolved.values() if force or u.due <= now]
        if not due:
            return
        outcomes = self.claims.take([(u.event.id, u.digest, u.event.topic, u.raw) for u in due])
        to_send, confirm, duplicates, rejects = [], [], Counter(), []
        for u, outcome in zip(due, outcomes):
            if outcome == MINE:
                to_send.append(u.event)
                confirm.append((u.event.id, u.digest))
            elif outcome == DONE:
                duplicates[u.event.topic] += 1
                del self.unresolved[u.event.id]
            elif outcome == HELD:
                u.due = now + self.recheck_interval
            else:  # the claim expired and another payload took the id
                rejects.append(self._conflict(u.event, u.raw, u.digest, outcome.decode()))
                del self.unresolved[u.event.id]
        if to_send:
            self._enqueue(to_send)
            self.claims.confirm(confirm)
            for event in to_send:
                del self.unresolved[event.id]
                log.warning("Event claimed by a bridge that never confirmed it (it died or stalled); its claim "
                            "expired and it is enqueued here", extra=event_fields(event.topic, event.type, event.id))
            self.stats["taken_over"] += len(to_send)
            metrics.TAKEN_OVER.inc(len(to_send))
        if rejects:
            self._store_rejects(rejects)
            self.stats["rejected"] += len(rejects)
        self._count(to_send, duplicates)
        metrics.UNRESOLVED.set(len(self.unresolved))
        self._write_checkpoint_if_due()

    def _reject(self, topic: str, raw: bytes, exc: envelope.InvalidEvent) -> dict:
        preview = printable(raw[:LOG_PAYLOAD_CHARS].decode("utf-8", "backslashreplace"))
        event_id = printable(exc.event_id) if exc.event_id else exc.event_id
        log.warning("Rejected message (%s: %s): %s%s", exc.reason, printable(exc.detail[:300]), preview,
                    "…" if len(raw) > LOG_PAYLOAD_CHARS else "", extra=event_fields(topic, None, event_id))
        metrics.REJECTED.labels(topic, exc.reason).inc()
        return {"topic": topic, "stage": "bridge", "reason": exc.reason, "detail": exc.detail,
                "payload": raw, "event_id": exc.event_id}

    def _conflict(self, event: envelope.Event, raw: bytes, mine: str, theirs: str) -> dict:
        """An id already claimed for other content: a dead letter, never dropped."""
        detail = (f"event id {event.id} was already used for another event (its digest {theirs}, this one's "
                  f"{mine}); this one is not enqueued")
        log.warning("Rejected message (conflicting_duplicate: %s)", detail,
                    extra=event_fields(event.topic, event.type, event.id))
        metrics.REJECTED.labels(event.topic, "conflicting_duplicate").inc()
        return {"topic": event.topic, "stage": "bridge", "reason": "conflicting_duplicate", "detail": detail,
                "payload": raw, "event_id": event.id}

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
        what was enqueued already), then propose its end as the checkpoint:
        written at once, or once the events other bridges held are resolved."""
        last = self._last_ids()
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.get(checkpoint_key(self.name, topic))
        self._checkpoints = {t: c for t, c in zip(self.topics, pipe.execute()) if c}
        for topic, end in last.items():
            start = self._checkpoints.get(topic, b"0-0")
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
                self._recheck_unresolved()  # another bridge replaying too: its confirmations come in meanwhile
                cursor = b"(" + entries[-1][0]
            if replayed:
                metrics.REPLAYED.labels(topic).inc(replayed)
                self.stats["replayed"] += replayed
                log.info("Replayed %d journal entries of %s since checkpoint %s", replayed, topic, start.decode(),
                         extra=event_fields(topic))
        self._propose_checkpoint(last)

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
        self._recheck_unresolved()
        self._heartbeat()
        self._measure_lag()
        if self.outbox is not None:
            self.outbox.run(self.client)
        if now >= self._next_audit:
            self._next_audit = now + self.audit_interval
            self._audit()

    def _audit(self) -> None:
        try:
            self.stats["recovered"] += audit(self.client, self.broker, self.name, self.topics, self._enqueue,
                                             self.audit_delay)
        except DatabaseError as exc:
            log.warning("Audit skipped: database unavailable (%s)", _one_line(exc))

    def _on_pong(self, data: bytes) -> None:
        if self._ping is None or data.decode() != self._ping[0]:
            return  # redis-py's own health-check PONG
        # Every message published before the marker is now in hand or flushed.
        last = self._ping[1]
        self._ping = None
        self._propose_checkpoint(last)

    def _propose_checkpoint(self, last_ids: dict[str, bytes]) -> None:
        """``last_ids`` are covered once what is in hand now is flushed and
        every event unresolved so far (and until that flush) is resolved."""
        self._gen += 1
        self._candidates.append((self._gen, last_ids))
        self._write_checkpoint_if_due()

    def _write_checkpoint_if_due(self) -> None:
        if not self._candidates or self.pending:
            return
        oldest = min((u.gen for u in self.unresolved.values()), default=self._gen + 1)
        due: dict[str, bytes] = {}
        while self._candidates and self._candidates[0][0] < oldest:
            due.update(self._candidates.pop(0)[1])
        due = {t: i for t, i in due.items() if self._checkpoints.get(t) != i}
        if due:
            pipe = self.client.pipeline(transaction=False)
            for topic, last_id in due.items():
                pipe.set(checkpoint_key(self.name, topic), last_id)
            pipe.execute()
            self._checkpoints.update(due)
            self._had_state = True

    def _measure_lag(self) -> None:
        """``eclean_bridge_journal_lag_seconds``: age of the oldest journal
        entry past the checkpoint, 0 when the checkpoint covers the journal."""
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.xrange(journal_key(topic), min=b"(" + self._checkpoints.get(topic, b"0-0"), count=1)
        now_ms = time.time() * 1000
        for topic, first in zip(self.topics, pipe.execute()):
            age = (now_ms - int(first[0][0].split(b"-")[0])) / 1000 if first else 0.0
            metrics.JOURNAL_LAG.labels(topic).set(max(0.0, age))

    def _heartbeat(self) -> None:
        beat = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "topics": list(self.topics)}
        self.client.set(heartbeat_key(self.name), json.dumps(beat), ex=self.heartbeat_ttl)


def _is_auth_error(exc: BaseException | None) -> bool:
    """kombu wraps what redis-py raised; look through the chain."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, _AUTH_ERRORS) or any(w in str(exc) for w in ("WRONGPASS", "NOAUTH", "invalid password")):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def _id_lt(a: bytes, b: bytes) -> bool:
    ams, aseq = (int(x) for x in a.split(b"-"))
    bms, bseq = (int(x) for x in b.split(b"-"))
    return (ams, aseq) < (bms, bseq)
