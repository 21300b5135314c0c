"""The batch flusher: what the bridge has read, validated, claimed, enqueued
or dead-lettered, and the events another bridge holds as pending.

Every message read ends as exactly one of: enqueued, duplicate, rejected (a
dead letter), or *unresolved* until another bridge's pending claim on it is
done or expired. An unresolved event is asked about again every
``recheck_interval`` and enqueued here once that claim has expired
(``EVENTS_CLAIM_PENDING_TTL``); until then no checkpoint moves past it, so a
restart replays it instead of skipping it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import msgspec

from e_clean_backend.logging import event_fields

from .. import envelope
from ..preflight import CredentialsRefused, is_refusal
from . import metrics
from .claims import DONE, HELD, MINE, Claims
from .logs import one_line, printable

log = logging.getLogger("workers.bridge")

LOG_PAYLOAD_CHARS = 200
_encode = msgspec.msgpack.Encoder().encode  # deterministic for a Struct, and the cheapest


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


class Flusher:
    """Holds what was read (``pending``) until :meth:`flush` settles it."""

    def __init__(self, *, claims: Claims, enqueue, dead_letter, max_bytes: int, recheck_interval: float,
                 broker_refused: Callable[[BaseException], str], stats: Counter):
        self.claims = claims
        self.enqueue = enqueue  # list[Event] -> None; raises on broker errors
        self.dead_letter = dead_letter  # list[dict] -> None
        self.max_bytes = max_bytes
        self.recheck_interval = recheck_interval
        self.broker_refused = broker_refused  # the one-line message naming what to fix
        self.stats = stats
        self.pending: list[tuple[str, bytes, str]] = []  # (topic, raw, source)
        self.unresolved: dict[str, Unresolved] = {}
        # Set by the journal cursor: the checkpoint generation new unresolved
        # events belong to, what to do after each flush, and "we enqueued".
        self.generation: Callable[[], int] = lambda: 0
        self.after_flush: Callable[[], None] = lambda: None
        self.on_enqueued: Callable[[], None] = lambda: None

    def add(self, topic: str, raw: bytes, source: str) -> None:
        self.pending.append((topic, raw, source))

    def enqueue_events(self, events: list[envelope.Event]) -> None:
        """Enqueue through the broker; a refusal of our credentials ends the bridge."""
        try:
            self.enqueue(events)
        except Exception as exc:
            if is_refusal(exc):
                raise CredentialsRefused(self.broker_refused(exc)) from None
            raise

    def flush(self) -> None:
        """Validate, claim, enqueue and dead-letter everything in hand.

        On a broker or Redis error the batch stays in hand and is retried after
        reconnecting; claims this bridge already holds let it through again.
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
                unresolved[event.id] = Unresolved(event, mine, raw, self.generation(), due)
            else:
                rejects.append(self._conflict(event, raw, mine, outcome.decode()))
        if to_send:
            self.enqueue_events(to_send)
            self.claims.confirm(confirm)
            self.on_enqueued()
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
        self.after_flush()

    def _count(self, sent: list[envelope.Event], duplicates: Counter) -> None:
        for topic, n in Counter(e.topic for e in sent).items():
            metrics.ENQUEUED.labels(topic).inc(n)
        for topic, n in duplicates.items():
            metrics.DUPLICATES.labels(topic).inc(n)
        self.stats["enqueued"] += len(sent)
        self.stats["duplicates"] += sum(duplicates.values())

    def recheck_unresolved(self, force: bool = False) -> None:
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
            self.enqueue_events(to_send)
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
        self.after_flush()

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
                      len(rejects), one_line(exc))
