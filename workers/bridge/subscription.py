"""The subscription: one pub/sub connection to every topic channel."""

from __future__ import annotations

import time
from typing import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from e_clean_backend import redis_config

SUBSCRIBE_TIMEOUT = 10.0


class Subscription:
    def __init__(self, url: str, topics: tuple[str, ...]):
        self.url = url
        self.topics = topics
        self.client: redis.Redis | None = None
        self.pubsub = None

    def open(self, take: Callable[[dict], None]) -> None:
        """Subscribe to every topic and wait for each confirmation; a message
        that arrives meanwhile goes to ``take`` like any other."""
        # No silent reconnects on the subscription: a gap must reach us, so the
        # journal can fill it.
        # Keep the client referenced: when it is garbage-collected it closes its
        # pool, and the subscription would be silently re-established.
        self.client = redis_config.client(self.url, retry=Retry(NoBackoff(), 0))
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(*self.topics)
        confirmed: set[str] = set()
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while confirmed != set(self.topics):
            if time.monotonic() > deadline:
                raise redis.TimeoutError(f"no subscribe confirmation within {SUBSCRIBE_TIMEOUT:.0f}s")
            msg = self.pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            if msg["type"] == "subscribe":
                confirmed.add(msg["channel"].decode())
            elif msg["type"] == "message":
                take(msg)

    @property
    def is_open(self) -> bool:
        return self.pubsub is not None

    def get(self, timeout: float) -> dict | None:
        return self.pubsub.get_message(timeout=timeout)

    def ping(self, marker: str) -> None:
        self.pubsub.ping(marker)

    def close(self) -> None:
        close_quietly(self.pubsub, self.client)
        self.pubsub = None
        self.client = None


def close_quietly(*closables) -> None:
    """Close each connection that is there; closing a broken socket may fail,
    and there is nothing to do about it."""
    for closable in closables:
        try:
            if closable is not None:
                closable.close()
        except Exception:  # noqa: BLE001 - see the docstring
            pass
