"""The bridge's periodic duties, each run every ``checkpoint_interval`` from
the loop (the audit every ``audit_interval``): what keeps the bridge honest
and visible besides reading messages."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter

import redis
from django.db import DatabaseError

from ..journal import heartbeat_key
from .audit import audit
from .logs import one_line

log = logging.getLogger("workers.bridge")


class Heartbeat:
    """``eclean:bridge:<name>:heartbeat``: who we are and when we last beat,
    expiring after ``ttl`` (what ``--check`` and the health check read)."""

    def __init__(self, name: str, topics: tuple[str, ...], ttl: int):
        self.name, self.topics, self.ttl = name, topics, ttl

    def beat(self, client: redis.Redis) -> None:
        beat = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "topics": list(self.topics)}
        client.set(heartbeat_key(self.name), json.dumps(beat), ex=self.ttl)


class Audit:
    """Enqueues again a journaled event whose task the broker lost
    (audit.py), every ``interval`` seconds."""

    def __init__(self, *, name: str, topics: tuple[str, ...], delay: float, interval: float, enqueue,
                 stats: Counter):
        self.name, self.topics, self.delay, self.interval = name, topics, delay, interval
        self.enqueue = enqueue
        self.stats = stats
        self.next_at = time.monotonic() + interval

    def run_if_due(self, client: redis.Redis, broker: redis.Redis, now: float) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        try:
            self.stats["recovered"] += audit(client, broker, self.name, self.topics, self.enqueue, self.delay)
        except DatabaseError as exc:
            log.warning("Audit skipped: database unavailable (%s)", one_line(exc))
