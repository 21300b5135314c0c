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
from .test_chaos import exactly_once, stack  # noqa: F401 - stack is a fixture, used by name

pytestmark = [pytest.mark.db, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(150)]

# The relay's delay, short so the tests do not wait EVENTS_OUTBOX_DELAY's default.
RELAY = {"EVENTS_OUTBOX_DELAY": "1"}

_DIES_AFTER_COMMIT = textwrap.dedent("""
    import os, sys
    from e_clean_backend.bootstrap import setup
    setup()
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


def _task_message(producer, task, event_id, args, **headers):
    import json as _json

    base = {"lang": "py", "task": task, "id": event_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": event_id,
            "parent_id": None, "argsrepr": "", "kwargsrepr": "{}", "origin": "attacker", "ignore_result": False,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}}
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    producer.publish(_json.dumps(body), exchange="", routing_key="jobs", content_type="application/json",
                     content_encoding="utf-8", headers={**base, **headers}, correlation_id=event_id)


def test_crafted_task_messages_are_dead_lettered_and_the_worker_goes_on(stack, users, redis_server):
    import uuid

    from kombu import Connection

    user = users["client"]
    worker = stack.worker()

    def event(title):
        return support.envelope("notification.created", {"user_id": user.pk, "title": title, "message": "m"})

    bad = {
        "timelimit-text": {"timelimit": ["x", "y"]},
        "timelimit-tiny": {"timelimit": [1e-9, 1e-9]},
        "eta-garbage": {"eta": "not a time"},
        "eta-year-9999": {"eta": "9999-01-01T00:00:00+00:00"},
        "retries-text": {"retries": "many"},
        "builtin-task": {"task": "celery.chord_unlock"},
        "unknown-task": {"task": "os.system"},
    }
    bad_ids = {}
    good_ids = []
    with Connection(redis_server.url) as conn:
        producer = conn.Producer()
        for name, headers in bad.items():
            message = event(name)
            args = [message] if headers.get("task") is None else ["group-id", {"interval": 0}]
            _task_message(producer, headers.pop("task", "notifications"), message["id"], args, **headers)
            bad_ids[message["id"]] = name
        # Protocol 1 (no headers at all): Celery would decode and run it.
        proto1 = event("proto1")
        producer.publish({"task": "notifications", "id": proto1["id"], "args": [proto1], "kwargs": {}},
                         exchange="", routing_key="jobs", serializer="json")
        bad_ids[proto1["id"]] = "proto1"
        # A valid task for a topic, then good events behind the bad ones.
        for n in range(5):
            message = event(f"good {n}")
            _task_message(producer, "notifications", message["id"], [message])
            good_ids.append(message["id"])
        good_ids.append(str(uuid.uuid4()))
        message = event("good last")
        message["id"] = good_ids[-1]
        _task_message(producer, "notifications", message["id"], [message])
    exactly_once(good_ids, timeout=60)
    letters = wait_for(lambda: (lambda rows: rows if len(rows) == len(bad_ids) else None)(
        list(DeadLetter.objects.filter(event_id__in=bad_ids))), timeout=30, what="a dead letter per bad message")
    for letter in letters:
        assert (letter.stage, letter.reason) == ("worker", "bad_task_message"), bad_ids[letter.event_id]
        assert letter.detail
    reasons = {bad_ids[letter.event_id]: letter.detail for letter in letters}
    assert "timelimit" in reasons["timelimit-text"] and "timelimit" in reasons["timelimit-tiny"]
    assert "celery.chord_unlock" in reasons["builtin-task"] and "not a topic task" in reasons["builtin-task"]
    assert not Notification.objects.filter(event_id__in=bad_ids).exists()
    assert not ProcessedEvent.objects.filter(event_id__in=bad_ids).exists()
    assert worker.proc.poll() is None, "the worker died"
    # Nothing lost: a topic task with bad headers keeps its event, and a replay
    # (proper headers) runs it once.
    from core.deadletters import replay

    letter = DeadLetter.objects.get(event_id=next(i for i, n in bad_ids.items() if n == "timelimit-text"))
    assert letter.topic == "notifications" and "timelimit" in letter.detail
    assert replay(DeadLetter.objects.filter(pk=letter.pk)).summary() == "1 replayed, 0 still invalid"
    wait_for(lambda: ProcessedEvent.objects.filter(event_id=letter.event_id).exists(), timeout=60,
             what="the replayed event handled")
    assert Notification.objects.filter(event_id=letter.event_id).count() == 1
    assert worker.proc.poll() is None, "the worker died"
    assert "Unrecoverable error" not in worker.log()
    # Nothing left on the queue or unacked: the bad ones were acked, not requeued.
    import redis as _redis

    client = _redis.Redis.from_url(redis_server.url)
    wait_for(lambda: client.llen("jobs") == 0 and client.hlen("unacked") == 0, timeout=20, what="queue drained")


@pytest.mark.parametrize("variable", ["REDIS_PASSWORD", "CELERY_BROKER_URL"])
def test_a_password_rotated_under_a_running_worker_ends_it_with_exit_3(tmp_path, redis_client, variable):
    import redis as _redis

    from devtools.redis_server import RedisServer

    with RedisServer() as server:
        env = {"REDIS_URL": server.url} if variable == "REDIS_PASSWORD" else {"CELERY_BROKER_URL": server.url}
        worker = support.worker(tmp_path, name=f"rotated-{variable}", env=env)
        try:
            worker.wait_log(support.WORKER_READY, timeout=60)
            admin = _redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
            admin.config_set("requirepass", "rotated-" + server.password)
            admin = _redis.Redis(host="127.0.0.1", port=server.port, password="rotated-" + server.password)
            admin.client_kill_filter(_type="normal", skipme=True)
            code = worker.wait(timeout=90)
        finally:
            worker.stop()
        log = worker.log()
    assert code == 3, log[-3000:]
    lines = [line for line in log.splitlines() if "refused the connection credentials" in line]
    assert len(lines) == 1, log[-3000:]
    assert variable in lines[0]
    assert server.password not in log
    assert "Trying again" not in log
