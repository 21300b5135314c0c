"""The bridge: Redis pub/sub topics in, one Celery task per valid event out.

    connect ─▶ subscribe ─▶ replay the journal since the checkpoint ─▶ serve
       ▲                                                              │
       └──────── lost connection: capped exponential backoff ◀────────┘

Serving drains whatever the socket has (up to a batch), then flushes the batch:
validate, claim, enqueue in one pipelined broker round trip, dead-letter the
rejects (flusher.py). A quiet channel flushes each message at once, a burst
flushes in batches, so latency stays low without a timer. Every
``checkpoint_interval`` the periodic duties run (see :meth:`Bridge.tick`).

Each concern is its own collaborator: the subscription (subscription.py), the
journal cursor and checkpoint (cursor.py), the batch flusher (flusher.py), the
claims (claims.py), the periodic duties (duties.py, outbox.py); this module
only connects them and keeps the schedule.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import redis
from kombu.exceptions import BatchPublishError, OperationalError
from redis.backoff import ExponentialBackoff

from e_clean_backend import redis_config

from ..preflight import REFUSED, CredentialsRefused
from . import metrics
from .claims import Claims
from .config import BridgeConfig
from .cursor import JournalCursor
from .duties import Audit, Heartbeat
from .flusher import Flusher
from .logs import one_line
from .subscription import Subscription, close_quietly

log = logging.getLogger("workers.bridge")

READY_MESSAGE = "Event bridge ready, listening to topics: %s"
# What the broker side raises when Redis goes away mid-enqueue: handled like a
# lost subscription (reconnect, retry the batch), never a crash.
_BrokerError = (BatchPublishError, OperationalError)
# Reconnect after 0.5 s, 1 s, 2 s ... 30 s.
BACKOFF = ExponentialBackoff(cap=30.0, base=0.5)


class Bridge:
    def __init__(self, config: BridgeConfig, *, enqueue, dead_letter, outbox=None):
        self.config = config
        self.outbox = outbox  # .run(client): publishes what the publisher's fast path left (outbox.py)
        self.shutdown = False
        self.client: redis.Redis | None = None
        self.broker: redis.Redis | None = None
        self.stats = Counter()
        self.claims = Claims(config.claim_pending_ttl, config.claim_ttl, config.accepted_maxlen)
        self.flusher = Flusher(claims=self.claims, enqueue=enqueue, dead_letter=dead_letter,
                               max_bytes=config.max_bytes, recheck_interval=config.recheck_interval,
                               broker_refused=self._broker_refused, stats=self.stats)
        pong_timeout = config.pong_timeout or redis_config.connection_options()["health_check_interval"] + 5
        self.cursor = JournalCursor(name=config.name, topics=config.topics, flusher=self.flusher,
                                    claims=self.claims, pong_timeout=pong_timeout, stats=self.stats)
        self.subscription = Subscription(config.url, config.topics)
        self.heartbeat = Heartbeat(config.name, config.topics, config.heartbeat_ttl)
        self.audit = Audit(name=config.name, topics=config.topics, delay=config.audit_delay,
                           interval=config.audit_interval, enqueue=self.flusher.enqueue_events, stats=self.stats)
        self._next_tick = 0.0

    # --- life cycle -------------------------------------------------------------

    def stop(self, *_):
        """Signal handler: only sets the flag; the loop finishes its batch and exits."""
        self.shutdown = True

    def run(self) -> int:
        """Serve until stopped; reconnect, with backoff, whenever Redis or the
        broker goes away. Returns 0; raises CredentialsRefused when Redis
        refuses our credentials (waiting will not fix that)."""
        failures = 0
        try:
            while not self.shutdown:
                try:
                    self._connect()
                    failures = 0
                    self._serve()
                except REFUSED as exc:
                    raise CredentialsRefused(redis_config.credential_error_message(self.config.url, exc)) from None
                # ResponseError: Redis up but refusing writes (OOM under noeviction,
                # READONLY after a failover, MISCONF on a full disk): wait, retry.
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError,
                        *_BrokerError) as exc:
                    if self.shutdown:
                        break
                    delay = BACKOFF.compute(failures)
                    failures += 1
                    self.stats["reconnects"] += 1
                    metrics.RECONNECTS.inc()
                    metrics.SUBSCRIBED.set(0)
                    log.warning("Lost Redis (%s); %d message(s) in hand, reconnecting in %.1fs",
                                one_line(exc), len(self.flusher.pending), delay)
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
        config = self.config
        self.client = redis_config.client(config.url)
        self.client.ping()  # credentials are checked here, before subscribing
        self.broker = self.client if config.broker_url == config.url else redis_config.client(config.broker_url)
        self._check_broker()
        self.claims.bind(self.client)
        self.cursor.bind(self.client)
        self.cursor.notice_lost_state()
        self.subscription.open(self._take)
        self.cursor.subscribed()
        metrics.SUBSCRIBED.set(1)
        log.info(READY_MESSAGE, list(config.topics))
        self.flusher.flush()  # what was in hand when the last connection broke
        self.cursor.replay()
        self.heartbeat.beat(self.client)

    def _disconnect(self) -> None:
        self.subscription.close()
        close_quietly(self.broker, self.client)
        self.broker = None
        self.client = None

    def _check_broker(self) -> None:
        """Credentials of the broker, named as what to fix: with its own
        CELERY_BROKER_URL, REDIS_PASSWORD has nothing to do with it."""
        if self.broker is self.client:
            return
        try:
            self.broker.ping()
        except REFUSED as exc:
            raise CredentialsRefused(self._broker_refused(exc)) from None

    def _broker_refused(self, exc: BaseException) -> str:
        config = self.config
        if config.broker_url == config.url:
            return redis_config.credential_error_message(config.url, exc)
        return (f"The broker Redis at {redis_config.redact(config.broker_url)} refused the connection credentials "
                f"({one_line(exc)}): fix the user/password in CELERY_BROKER_URL, the broker's own URL")

    def _drain_on_shutdown(self) -> None:
        """Finish what is in hand: read what the socket already holds, flush it."""
        if not self.subscription.is_open:
            return
        flusher = self.flusher
        try:
            while len(flusher.pending) < 100_000:
                msg = self.subscription.get(timeout=0)
                if msg is None:
                    break
                self._take(msg)
            flusher.flush()
            flusher.recheck_unresolved(force=True)
            self.claims.flush()
            self.cursor.write_if_due()
            if flusher.unresolved:
                log.warning("%d event(s) still claimed by another bridge (pending) at shutdown; the checkpoint stays "
                            "before them, so the next start looks at them again", len(flusher.unresolved))
            log.info("Event bridge stopped cleanly: %s", dict(self.stats))
        except (redis.RedisError, OSError, *_BrokerError) as exc:
            log.error("Could not flush %d message(s) on shutdown (%s); journaled ones are replayed on the next start",
                      len(flusher.pending), one_line(exc))

    # --- serving --------------------------------------------------------------

    def _serve(self) -> None:
        """The schedule: read a batch, flush it, and every checkpoint_interval
        run the periodic duties."""
        while not self.shutdown:
            self._read_batch()
            self.flusher.flush()
            if time.monotonic() >= self._next_tick:
                self.tick()

    def tick(self) -> None:
        """The periodic duties, in this order each ``checkpoint_interval``."""
        now = time.monotonic()
        self._next_tick = now + self.config.checkpoint_interval
        self.cursor.mark(self.subscription, now)  # checkpoint marker PING, or the PONG watchdog
        self.flusher.recheck_unresolved()  # events another bridge holds as pending
        self.heartbeat.beat(self.client)
        self.cursor.measure_lag()
        if self.outbox is not None:
            self.outbox.run(self.client)  # the outbox relay
        self.audit.run_if_due(self.client, self.broker, now)  # tasks the broker lost

    def _read_batch(self) -> None:
        """Take what the socket holds, up to a batch; wait ``poll_timeout``
        for the first message only when nothing is there."""
        get = self.subscription.get
        msg = get(timeout=0)
        if msg is None:
            self.claims.flush()  # idle: confirm the last batch's claims before waiting
            msg = get(timeout=self.config.poll_timeout)
        if msg is not None:
            self.cursor.heard_at = time.monotonic()
        while msg is not None:
            self._take(msg)
            if len(self.flusher.pending) >= self.config.batch_size:
                break
            msg = get(timeout=0)

    def _take(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "message":
            self.flusher.add(msg["channel"].decode(), msg["data"], "live")
        elif kind == "pong":
            self.cursor.on_pong(msg["data"])
        elif kind in ("unsubscribe", "subscribe"):
            # Only we subscribe; a subscribe/unsubscribe here means the
            # subscription was reset under us. Reconnect and replay.
            raise redis.ConnectionError(f"unexpected {kind} for {msg['channel']!r}")
