"""The journal cursor: where this bridge is in each topic's journal, the
replay from there, and the checkpoint that moves it on.

The checkpoint says "every journal entry up to here is enqueued". It advances
by a marker PING on the subscription: read the journal's last ids, send PING;
when the PONG comes back every message published before the read has been
received, so once those are flushed the checkpoint may move to those ids.
Candidates proven by a PONG or a replay are written oldest first, once no
event left unresolved by then (flusher.py) is older than them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import redis

from e_clean_backend.logging import event_fields

from ..journal import JOURNAL_FIELD, checkpoint_key, claim_key, journal_key
from . import metrics
from .claims import Claims
from .flusher import Flusher

log = logging.getLogger("workers.bridge")

JOURNAL_PAGE = 1000


class JournalCursor:
    def __init__(self, *, name: str, topics: tuple[str, ...], flusher: Flusher, claims: Claims,
                 pong_timeout: float, stats: Counter):
        self.name = name
        self.topics = topics
        self.flusher = flusher
        self.claims = claims
        self.pong_timeout = pong_timeout
        self.stats = stats
        self.client: redis.Redis | None = None
        self._ping: tuple[str, dict[str, bytes], float] | None = None  # marker, last ids, sent at
        # Checkpoints proven by a PONG or a replay, oldest first, each with its
        # generation; written once no unresolved event of that generation or
        # older is left (see flusher.Unresolved.gen).
        self._candidates: list[tuple[int, dict[str, bytes]]] = []
        self._gen = 0
        self.positions: dict[str, bytes] = {}  # checkpoints as last written or read
        self.had_state = False  # this process wrote a checkpoint: Redis had our state
        self._marker = 0
        self.heard_at = 0.0  # when the subscription last delivered anything
        flusher.generation = lambda: self._gen
        flusher.after_flush = self.write_if_due
        flusher.on_enqueued = self._enqueued

    def _enqueued(self) -> None:
        self.had_state = True

    def bind(self, client: redis.Redis) -> None:
        self.client = client

    def subscribed(self) -> None:
        """A fresh subscription: no marker is in flight, and the replay that
        follows proves a newer checkpoint than any candidate."""
        self._ping = None
        self._candidates = []
        self.heard_at = time.monotonic()

    def notice_lost_state(self) -> None:
        """A Redis that came back empty (no persistence) lost the journal, the
        claims and our checkpoints: replay cannot recover what was in flight.
        Say so once, loudly, and count it."""
        if not self.had_state or not (self.positions or self.claims.last_confirmed):
            return
        pipe = self.client.pipeline(transaction=False)
        for topic in self.positions:
            pipe.exists(checkpoint_key(self.name, topic))
        if self.claims.last_confirmed:
            pipe.exists(claim_key(self.claims.last_confirmed))
        for topic in self.topics:
            pipe.xlen(journal_key(topic))
        found = pipe.execute()
        n = len(found) - len(self.topics)
        if any(found[:n]):
            return
        self.had_state = False
        self.positions = {}
        metrics.REDIS_STATE_LOST.inc()
        self.stats["redis_state_lost"] += 1
        log.error("Redis lost its data: this bridge's checkpoints and claims are gone (journals now hold %d entries); "
                  "it restarted without persistence or was flushed. Events in flight before the restart (queued "
                  "tasks, journal entries not yet enqueued) may be lost: turn on AOF (appendonly yes)",
                  sum(found[n:]))

    def _last_ids(self) -> dict[str, bytes]:
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.xrevrange(journal_key(topic), count=1)
        return {t: r[0][0] for t, r in zip(self.topics, pipe.execute()) if r}

    def replay(self) -> None:
        """Enqueue what the journal holds past our checkpoint (claims skip
        what was enqueued already), then propose its end as the checkpoint:
        written at once, or once the events other bridges held are resolved."""
        last = self._last_ids()
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.get(checkpoint_key(self.name, topic))
        self.positions = {t: c for t, c in zip(self.topics, pipe.execute()) if c}
        for topic, end in last.items():
            start = self.positions.get(topic, b"0-0")
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
                    self.flusher.add(topic, fields.get(JOURNAL_FIELD, b""), "journal")
                replayed += len(entries)
                self.flusher.flush()
                self.flusher.recheck_unresolved()  # another bridge replaying too: its confirmations come in meanwhile
                cursor = b"(" + entries[-1][0]
            if replayed:
                metrics.REPLAYED.labels(topic).inc(replayed)
                self.stats["replayed"] += replayed
                log.info("Replayed %d journal entries of %s since checkpoint %s", replayed, topic, start.decode(),
                         extra=event_fields(topic))
        self._propose(last)

    def mark(self, subscription, now: float) -> None:
        """Send a marker PING with the journal's last ids, or, while one is in
        flight, check the subscription still answers."""
        if self._ping is not None:
            # Behind a backlog the PONG waits its turn: only silence (nothing
            # read since the PING) means a dead connection.
            if now - max(self._ping[2], self.heard_at) > self.pong_timeout:
                raise redis.TimeoutError(f"no PONG on the subscription for {self.pong_timeout:.0f}s")
        else:
            last = self._last_ids()
            self._marker += 1
            marker = f"ckpt-{self._marker}"
            subscription.ping(marker)
            self._ping = (marker, last, now)

    def on_pong(self, data: bytes) -> None:
        if self._ping is None or data.decode() != self._ping[0]:
            return  # redis-py's own health-check PONG
        # Every message published before the marker is now in hand or flushed.
        last = self._ping[1]
        self._ping = None
        self._propose(last)

    def _propose(self, last_ids: dict[str, bytes]) -> None:
        """``last_ids`` are covered once what is in hand now is flushed and
        every event unresolved so far (and until that flush) is resolved."""
        self._gen += 1
        self._candidates.append((self._gen, last_ids))
        self.write_if_due()

    def write_if_due(self) -> None:
        if not self._candidates or self.flusher.pending:
            return
        oldest = min((u.gen for u in self.flusher.unresolved.values()), default=self._gen + 1)
        due: dict[str, bytes] = {}
        while self._candidates and self._candidates[0][0] < oldest:
            due.update(self._candidates.pop(0)[1])
        due = {t: i for t, i in due.items() if self.positions.get(t) != i}
        if due:
            pipe = self.client.pipeline(transaction=False)
            for topic, last_id in due.items():
                pipe.set(checkpoint_key(self.name, topic), last_id)
            pipe.execute()
            self.positions.update(due)
            self.had_state = True

    def measure_lag(self) -> None:
        """``eclean_bridge_journal_lag_seconds``: age of the oldest journal
        entry past the checkpoint, 0 when the checkpoint covers the journal."""
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics:
            pipe.xrange(journal_key(topic), min=b"(" + self.positions.get(topic, b"0-0"), count=1)
        now_ms = time.time() * 1000
        for topic, first in zip(self.topics, pipe.execute()):
            age = (now_ms - int(first[0][0].split(b"-")[0])) / 1000 if first else 0.0
            metrics.JOURNAL_LAG.labels(topic).set(max(0.0, age))


def _id_lt(a: bytes, b: bytes) -> bool:
    ams, aseq = (int(x) for x in a.split(b"-"))
    bms, bseq = (int(x) for x in b.split(b"-"))
    return (ams, aseq) < (bms, bseq)
