"""The bridge's settings, read once: one object every collaborator is given."""

from __future__ import annotations

from dataclasses import dataclass

from .. import envelope
from ..topics import TOPICS


@dataclass(frozen=True)
class BridgeConfig:
    url: str  # REDIS_URL: pub/sub, journal, claims, checkpoints
    # The broker may be another Redis (CELERY_BROKER_URL): its queues and
    # kombu's unacked hash are read from there, and its refusals named so.
    broker_url: str
    topics: tuple[str, ...] = TOPICS
    name: str = "bridge"
    batch_size: int = 500
    max_bytes: int = envelope.DEFAULT_MAX_BYTES
    claim_pending_ttl: int = 10
    claim_ttl: int = 7 * 24 * 3600
    heartbeat_ttl: int = 30
    poll_timeout: float = 0.25
    checkpoint_interval: float = 1.0  # also how often the periodic duties run
    pong_timeout: float | None = None  # None: the Redis health-check interval + 5 s
    audit_delay: float = 300.0
    audit_interval: float = 10.0
    accepted_maxlen: int = 100_000  # EVENTS_JOURNAL_MAXLEN
    outbox_delay: float = 5.0

    @classmethod
    def from_settings(cls) -> BridgeConfig:
        """Built once, at start-up, from Django settings (each value's reason
        is beside it in backend/e_clean_backend/settings.py)."""
        from django.conf import settings

        return cls(
            url=settings.REDIS_URL,
            broker_url=settings.CELERY_BROKER_URL,
            name=settings.BRIDGE_NAME,
            batch_size=settings.BRIDGE_BATCH_SIZE,
            max_bytes=settings.EVENTS_MAX_BYTES,
            claim_pending_ttl=settings.EVENTS_CLAIM_PENDING_TTL,
            claim_ttl=settings.EVENTS_CLAIM_TTL,
            heartbeat_ttl=settings.BRIDGE_HEARTBEAT_TTL,
            audit_delay=settings.EVENTS_AUDIT_DELAY,
            audit_interval=settings.EVENTS_AUDIT_INTERVAL,
            accepted_maxlen=settings.EVENTS_JOURNAL_MAXLEN,
            outbox_delay=settings.EVENTS_OUTBOX_DELAY,
        )

    @property
    def recheck_interval(self) -> float:
        """How often an event another bridge holds as pending is asked about again."""
        return min(1.0, self.claim_pending_ttl / 2)
