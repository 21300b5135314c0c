"""Chaos scenarios for the holes of issue 8 on the publisher and worker side:
a publisher killed between commit and publish, a hung Redis, crafted task
messages, a password rotated under a running worker.

Real redis-server, bridge and worker processes, as in test_chaos.py (whose
fixtures this module reuses); pass criteria come from the database.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core import events
from core.models import DeadLetter, Notification, OutboxEvent, ProcessedEvent

from .. import support
from ..support import wait_for
from .test_chaos import Stack, exactly_once, stack  # noqa: F401 - stack is a fixture

pytestmark = [pytest.mark.db, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(150)]

# The relay's delay, short so the tests do not wait EVENTS_OUTBOX_DELAY's default.
RELAY = {"EVENTS_OUTBOX_DELAY": "1"}

_DIES_AFTER_COMMIT = textwrap.dedent("""
    import os, sys
    import workers, django
    django.setup()
    from django.db import transaction
    from core.events import publish_event
    with transaction.atomic():
        # Registered first, so it runs first: the process dies after the
        # commit, before the publisher's own on-commit callback.
        transaction.on_commit(lambda: os._exit(0))
        event_id = publish_event("notifications", "notification.created",
                                 {"user_id": int(sys.argv[1]), "title": "outbox", "message": "m"})
        print(event_id, flush=True)
""")


def test_a_publisher_killed_between_commit_and_publish_loses_nothing(stack, users):
    stack.env.update(RELAY)
    stack.worker()
    stack.bridge()
    done = subprocess.run([sys.executable, "-c", _DIES_AFTER_COMMIT, str(users["client"].pk)], cwd=support.REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.strip()
    # Committed, never published: only the outbox has it ...
    assert OutboxEvent.objects.filter(pk=event_id).exists()
    # ... and the bridge's relay publishes it; its effect happens once.
    exactly_once([event_id], timeout=60)
    wait_for(lambda: not OutboxEvent.objects.filter(pk=event_id).exists(), timeout=20, what="the row to go")
    assert "Relayed from the outbox" in stack.logs("bridge")


def test_a_hung_redis_holds_the_request_briefly_and_the_event_goes_out_later(stack, users, redis_server,
                                                                             monkeypatch):
    monkeypatch.setattr(events._local, "client", None, raising=False)
    monkeypatch.setattr(events, "_paused_until", 0.0)
    from django.db import transaction

    user = users["client"]
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with transaction.atomic():  # an admin bulk action on 4 rows
            ids = [events.publish_event("notifications", "notification.created",
                                        {"user_id": user.pk, "title": f"hung {n}", "message": "m"})
                   for n in range(4)]
        elapsed = time.monotonic() - started
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert elapsed < 2.5, f"publish_event held the request {elapsed:.1f}s on a hung Redis"
    assert OutboxEvent.objects.filter(pk__in=ids).count() == 4
    stack.env.update(RELAY)
    stack.worker()
    stack.bridge()
    exactly_once(ids, timeout=60)
    assert not DeadLetter.objects.exists(), "a publish that timed out left a dead letter"
    events._local.client = None
    events._paused_until = 0.0
