"""The chaos suite: real redis-server, real bridge and worker processes (each in
its own process group), killed, stopped and restarted while events flow.

Pass criteria are read from the database and the dead letters, never from log
text: every event from the publisher has its effect exactly once.
"""

from __future__ import annotations

import os
import pickle
import signal
import time
import uuid

import pytest
import redis

from core import events
from core.models import DeadLetter, Notification, ProcessedEvent
from devtools.redis_server import RedisServer
from workers import journal

from .. import support
from ..support import publish_raw, wait_for

pytestmark = [pytest.mark.db, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(150)]
FAULTY = ("-A", "tests.chaos.faulty")
TOPICS = ("jobs", "notifications", "chat", "payments")


def faulty_worker(tmp_path, name="worker", concurrency=2, env=None):
    import sys

    args = [sys.executable, "-m", "celery", *FAULTY, "worker", "-Q", ",".join(TOPICS), "-c", str(concurrency),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"]
    return support.start(name, args, tmp_path, {"REMAP_SIGTERM": "SIGQUIT", **(env or {})})


class Stack:
    """Bridge(s) and worker(s) for one test; all stopped at the end."""

    def __init__(self, tmp_path, env=None):
        self.tmp = tmp_path
        self.env = env or {}
        self.procs: list[support.Proc] = []
        self.n = 0

    def bridge(self, name="bridge", wait=True, **env):
        self.n += 1
        proc = support.bridge(self.tmp, name=f"{name}-{self.n}", env={**self.env, **env})
        self.procs.append(proc)
        if wait:
            proc.wait_log(support.READY)
        return proc

    def worker(self, name="worker", wait=True, **kw):
        self.n += 1
        proc = faulty_worker(self.tmp, name=f"{name}-{self.n}", env=self.env, **kw)
        self.procs.append(proc)
        if wait:
            proc.wait_log(support.WORKER_READY, timeout=60)
        return proc

    def stop(self):
        for proc in self.procs:
            proc.stop()

    def logs(self, prefix):
        return "".join(p.log() for p in self.procs if p.name.startswith(prefix))


@pytest.fixture
def stack(tmp_path, redis_client, users):
    s = Stack(tmp_path)
    yield s
    s.stop()


def publish(user, n, title="hello", client=None, maxlen=100_000) -> list[str]:
    """Publish ``n`` events through the project's publisher path (journal + PUBLISH)."""
    ids = []
    for _ in range(n):
        event_id = str(uuid.uuid4())
        payload = events.build_event("notifications", "notification.created",
                                     {"user_id": user.pk, "title": title, "message": "m"}, event_id)
        if client is None:
            events.send("notifications", payload, event_id, "notification.created")
        else:
            _send_retrying(client, payload, maxlen)
        ids.append(event_id)
    return ids


def _send_retrying(client, payload, maxlen):
    for _ in range(200):
        try:
            return journal.publish(client, "notifications", payload, maxlen)
        except redis.ConnectionError:
            time.sleep(0.05)  # Redis restarting: the test's publisher waits, as an outbox would
    raise AssertionError("could not publish for 10s")


def spread(users, n_per_topic, job):
    """Events for all four topics that each produce exactly one notification row."""
    client, cleaner = users["client"], users["cleaner"]
    out = []
    for i in range(n_per_topic):
        out.append(("jobs", "job.created", {"job_id": job.pk}))
        out.append(("notifications", "notification.created", {"user_id": client.pk, "title": f"n{i}", "message": "m"}))
        out.append(("chat", "chat.message", {"sender_id": client.pk, "recipient_id": cleaner.pk, "text": f"c{i}"}))
        out.append(("payments", "payment.failed", {"payment_id": f"pi_{i}", "job_id": job.pk, "amount": "1.00",
                                                   "currency": "EUR"}))
    ids = []
    for topic, type, data in out:
        event_id = str(uuid.uuid4())
        events.send(topic, events.build_event(topic, type, data, event_id), event_id, type)
        ids.append(event_id)
    return ids


def effects(ids) -> tuple[int, int]:
    """(events handled, notifications) among ``ids``."""
    handled = ProcessedEvent.objects.filter(event_id__in=ids).count()
    rows = Notification.objects.filter(event_id__in=ids).count()
    return handled, rows


def exactly_once(ids, timeout=60):
    try:
        wait_for(lambda: effects(ids)[0] == len(ids), timeout=timeout, interval=0.2, what=f"{len(ids)} events handled")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {effects(ids)[0]} handled, {ProcessedEvent.objects.count()} in all, "
                             f"{len(set(ids))} distinct ids") from None
    time.sleep(0.3)
    handled, rows = effects(ids)
    assert handled == len(ids), "an event was handled twice or lost"
    assert rows == len(ids), f"{rows} notifications for {len(ids)} events"
    assert not DeadLetter.objects.filter(event_id__in=ids).exists()


def test_1000_events_250_per_topic(stack, users, job):
    stack.bridge()
    stack.worker()
    ids = spread(users, 250, job)
    exactly_once(ids, timeout=90)
    assert "already handled" not in stack.logs("worker"), "an event was enqueued twice"


def test_worker_sigkill_mid_stream_then_restart(stack, users):
    stack.bridge()
    first = stack.worker()
    ids = publish(users["client"], 100, title="slow:0.05")
    wait_for(lambda: effects(ids)[0] >= 10, what="some handled")
    first.signal(signal.SIGKILL, group=True)  # main process and pool, no goodbye
    first.wait(10)
    ids += publish(users["client"], 100)
    stack.worker()  # its unacked messages come back after the visibility timeout
    exactly_once(ids, timeout=60)


def test_worker_child_sigkill_inside_a_handler(stack, users):
    stack.bridge()
    stack.worker()
    once = publish(users["client"], 3, title="die-once")
    always = publish(users["client"], 1, title="die")
    normal = publish(users["client"], 20)
    exactly_once(once + normal, timeout=60)
    from django.conf import settings

    letter = wait_for(lambda: DeadLetter.objects.filter(event_id=always[0]).first(), timeout=60,
                      what="the always-dying event dead-lettered")
    assert letter.reason == "worker_lost"
    assert f"delivered {settings.EVENTS_MAX_DELIVERIES} times" in letter.detail
    assert effects(always) == (0, 0)


def test_worker_sigterm_with_tasks_in_flight(stack, users):
    from django.conf import settings

    stack.bridge()
    worker = stack.worker()
    ids = publish(users["client"], 12, title="slow:1")
    wait_for(lambda: "Task notifications[" in worker.log(), what="tasks started")
    time.sleep(0.5)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    worker.wait(settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT + 15)
    assert time.monotonic() - started < settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT + 15
    stack.worker()
    exactly_once(ids, timeout=60)


def test_a_task_lost_by_the_broker_is_recovered_by_the_audit(stack, users, redis_client):
    """The window no ack setting closes: a task popped (BRPOP) and gone before
    the worker recorded it. Simulated by popping it ourselves."""
    stack.bridge()
    ids = publish(users["client"], 3)
    wait_for(lambda: redis_client.llen("notifications") == 3, what="3 tasks queued")
    assert redis_client.rpop("notifications")  # kombu consumes from the right: this one is gone
    stack.worker()
    exactly_once(ids, timeout=60)
    assert "enqueued again (audit)" in stack.logs("bridge")


def test_redis_restarted_mid_stream_with_aof(tmp_path, users, clean_db):
    server = RedisServer(appendonly=True).start()
    stack = Stack(tmp_path, env={"REDIS_URL": server.url})
    client = redis.Redis.from_url(server.url)
    try:
        bridge = stack.bridge()
        stack.worker()
        ids = publish(users["client"], 150, client=client)
        server.restart()
        ids += publish(users["client"], 150, client=client)
        exactly_once(ids, timeout=90)
        assert bridge.log().count(support.READY) >= 2, "the bridge resubscribed"
        assert bridge.proc.poll() is None
    finally:
        stack.stop()
        client.close()
        server.cleanup()


def test_pubsub_connection_killed(stack, users, redis_client):
    from django.conf import settings

    bridge = stack.bridge()
    stack.worker()
    ids = publish(users["client"], 50)
    killed = redis_client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    gap = publish(users["client"], 50)  # some of these reach no subscriber: the journal has them
    ids += gap
    deadline = settings.REDIS_OPTIONS["health_check_interval"] + 5
    bridge.wait_log(support.READY, timeout=deadline, count=2)
    ids += publish(users["client"], 50)
    exactly_once(ids)


def test_bridge_sigstop_then_sigcont(stack, users):
    bridge = stack.bridge()
    stack.worker()
    bridge.signal(signal.SIGSTOP)
    ids = publish(users["client"], 200)
    time.sleep(0.5)
    bridge.signal(signal.SIGCONT)
    exactly_once(ids)


def test_bridge_sigkill_then_restart(stack, users):
    bridge = stack.bridge()
    stack.worker()
    ids = publish(users["client"], 50)
    wait_for(lambda: effects(ids)[0] >= 1, what="some handled")
    bridge.signal(signal.SIGKILL)
    bridge.wait(10)
    ids += publish(users["client"], 200)  # nobody subscribed: journal only
    stack.bridge()
    exactly_once(ids)
    assert "already handled" not in stack.logs("worker")


def test_two_bridges_1000_events(stack, users, job):
    one = stack.bridge(BRIDGE_NAME="one")
    two = stack.bridge(BRIDGE_NAME="two")
    stack.worker()
    ids = spread(users, 250, job)
    exactly_once(ids, timeout=90)
    assert "already handled" not in stack.logs("worker"), "an event was enqueued by both bridges"
    for b in (one, two):
        b.signal(signal.SIGTERM)
        assert b.wait(10) == 0
    enqueued = sum(int(b.log().split("'enqueued': ")[1].split(",")[0]) for b in (one, two))
    assert enqueued == len(ids)


GARBAGE = {
    "not_utf8": b"\xc3\x28\xff",
    "not_json": b"{nope",
    "bad_envelope": b"[1, 2]",
    "missing_id": b'{"type": "job.created", "data": {"job_id": 1}}',
    "unknown_type": b'{"id": "%s", "type": "job.exploded", "data": {}}' % str(uuid.uuid4()).encode(),
    "wrong_topic": b'{"id": "%s", "type": "chat.message", "data": {}}' % str(uuid.uuid4()).encode(),
    "too_large": b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}',
    "too_deep": b'{"id": "%s", "type": "job.created", "data": ' % str(uuid.uuid4()).encode()
    + b"[" * 30_000 + b"]" * 30_000 + b"}",  # under the size limit
}


def test_garbage_never_stops_the_bridge(stack, users, redis_client):
    bridge = stack.bridge()
    stack.worker()
    pid = bridge.pid
    for raw in GARBAGE.values():
        publish_raw(redis_client, "jobs", raw)
    good = publish(users["client"], 1)
    exactly_once(good)
    wait_for(lambda: DeadLetter.objects.count() == len(GARBAGE), what="one dead letter per message")
    assert bridge.pid == pid and bridge.proc.poll() is None
    reasons = sorted(DeadLetter.objects.values_list("reason", flat=True))
    assert reasons == sorted(["not_utf8", "not_json", "bad_envelope", "bad_envelope", "unknown_type",
                              "wrong_topic", "too_large", "too_deep"])
    assert ProcessedEvent.objects.count() == 1  # 0 tasks for the garbage
    assert "stopped cleanly" not in bridge.log()


def test_transient_error_twice_then_success(stack, users):
    stack.bridge()
    stack.worker()
    ids = publish(users["client"], 1, title="flaky:2")
    exactly_once(ids)
    assert ProcessedEvent.objects.get(event_id=ids[0]).attempts == 3


def test_permanent_error_dead_letter_no_retry(stack, users, job):
    stack.bridge()
    stack.worker()
    job.status = "completed"
    job.save()
    event_id = str(uuid.uuid4())
    events.send("jobs", events.build_event("jobs", "job.cancelled", {"job_id": job.pk}, event_id), event_id,
                "job.cancelled")
    letter = wait_for(lambda: DeadLetter.objects.filter(event_id=event_id).first(), what="dead letter")
    assert (letter.reason, letter.attempts) == ("permanent_error", 1)
    job.refresh_from_db()
    assert job.status == "completed"
    assert effects([event_id]) == (0, 0)


def test_redis_not_up_when_bridge_and_worker_start(tmp_path, users, clean_db):
    server = RedisServer()
    stack = Stack(tmp_path, env={"REDIS_URL": server.url})
    try:
        bridge = stack.bridge(wait=False)
        worker = stack.worker(wait=False)
        time.sleep(3)
        assert bridge.proc.poll() is None and worker.proc.poll() is None, "nothing crash-loops"
        server.start()
        bridge.wait_log(support.READY, timeout=40)
        worker.wait_log(support.WORKER_READY, timeout=40)
        client = redis.Redis.from_url(server.url)
        ids = publish(users["client"], 20, client=client)
        client.close()
        exactly_once(ids)
    finally:
        stack.stop()
        server.cleanup()


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['CHAOS_PWNED']}",))


def test_pickle_message_is_refused_and_never_run(stack, users, tmp_path, redis_client, monkeypatch):
    from kombu import Connection

    pwned = tmp_path / "pwned"
    monkeypatch.setenv("CHAOS_PWNED", str(pwned))
    stack.bridge()
    worker = stack.worker()
    from django.conf import settings

    with Connection(settings.CELERY_BROKER_URL) as conn:
        producer = conn.Producer()
        body = pickle.dumps(((_Exploit(),), {}, {}))
        producer.publish(body, routing_key="jobs", exchange="jobs", content_type="application/x-python-serialize",
                         content_encoding="binary", serializer=None,
                         headers={"task": "jobs", "id": str(uuid.uuid4()), "lang": "py", "argsrepr": "", "kwargsrepr": ""})
    wait_for(lambda: "untrusted content" in worker.log() or "ContentDisallowed" in worker.log(),
             what="the worker to refuse the pickle")
    good = publish(users["client"], 1)
    exactly_once(good)
    assert not pwned.exists()
    assert worker.proc.poll() is None


def test_a_handler_past_the_time_limit_is_requeued_then_dead_lettered(tmp_path, users, redis_client):
    from django.conf import settings

    stack = Stack(tmp_path, env={"CELERY_TASK_TIME_LIMIT": "2", "CELERY_VISIBILITY_TIMEOUT": "10"})
    try:
        stack.bridge()
        stack.worker()
        hanging = publish(users["client"], 1, title="slow:30")
        normal = publish(users["client"], 5)
        exactly_once(normal)
        letter = wait_for(lambda: DeadLetter.objects.filter(event_id=hanging[0]).first(), timeout=60,
                          what="the hanging event dead-lettered")
        assert letter.reason == "worker_lost"
        assert f"delivered {settings.EVENTS_MAX_DELIVERIES} times" in letter.detail
        assert effects(hanging) == (0, 0)
    finally:
        stack.stop()
