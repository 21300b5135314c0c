"""Chaos scenarios for the bridge's recovery (issue 8): bridges SIGKILLed while
they hold claims, plain-PUBLISH events through worker deaths and lost tasks,
and a Redis that comes back empty. Same rules as tests/chaos/test_chaos.py:
real processes, pass criteria read from the database.

``EVENTS_AUDIT_DELAY`` is set far out where a scenario is about the claims, so
the audit (minutes, in production) cannot be what saves the events.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis

from devtools.redis_server import RedisServer, free_port

from .. import support
from ..support import envelope, publish_raw, wait_for
from .test_chaos import Stack, effects, exactly_once, publish, stack  # noqa: F401 - stack is a fixture

pytestmark = [pytest.mark.db, pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(240)]
NO_AUDIT = {"EVENTS_AUDIT_DELAY": "600"}


def raw_events(user, n: int, title: str = "raw") -> list[dict]:
    """Plain-PUBLISH messages; a ``title`` with a fault (``slow:S``) is kept as is."""
    return [envelope("notification.created",
                     {"user_id": user.pk, "title": title if ":" in title else f"{title}{i}", "message": "m"})
            for i in range(n)]


def scrape(port: int) -> dict[str, float]:
    import requests

    values = {}
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_two_bridges_lose_no_plain_publish_when_one_is_sigkilled_mid_stream(tmp_path, users, redis_client,
                                                                             redis_server):
    """The README's no-single-point-of-failure setup: whatever bridge A had
    claimed and not enqueued when it died, bridge B enqueues once A's pending
    claim expires. The reproduction lost 350 of 3,000 this way."""
    stack = Stack(tmp_path, env=NO_AUDIT)
    try:
        a = stack.bridge(BRIDGE_NAME="a")
        stack.bridge(BRIDGE_NAME="b")
        stack.worker()
        messages = raw_events(users["client"], 3000)
        publisher = redis.Redis.from_url(redis_server.url)
        # Ten bursts a second apart; A is SIGKILLed 20 ms into three of them,
        # while it is busy claiming and enqueueing, and restarted at once (as
        # compose's restart policy does).
        for burst in range(10):
            pipe = publisher.pipeline(transaction=False)
            for m in messages[burst * 300:(burst + 1) * 300]:
                publish_raw(pipe, "notifications", m)
            pipe.execute()
            if burst in (1, 4, 7):
                time.sleep(0.02)
                a.signal(signal.SIGKILL)
                a.wait(10)
                a = stack.bridge(BRIDGE_NAME="a", wait=False)
            time.sleep(1.0)
            if burst in (3, 6):
                a.wait_log(support.READY)
        publisher.close()
        ids = [m["id"] for m in messages]
        started = time.monotonic()
        exactly_once(ids, timeout=150)
        assert time.monotonic() - started < 150
    finally:
        stack.stop()


def test_bridge_killed_twice_while_replaying_a_backlog(tmp_path, users, redis_client):
    """Killed mid-replay and restarted at once, twice: the pages it had claimed
    and not enqueued are enqueued by the next one when the claims expire, and
    its checkpoint never passes them."""
    ids = publish(users["client"], 4000)  # journaled; no bridge is listening
    stack = Stack(tmp_path, env=NO_AUDIT)
    try:
        for _ in range(2):
            bridge = stack.bridge(wait=False)
            bridge.wait_log(support.READY)  # logged just before the replay starts
            wait_for(lambda: redis_client.llen("notifications") > 0, timeout=20, interval=0.005,
                     what="the replay under way")
            bridge.signal(signal.SIGKILL)
            bridge.wait(10)
        killed_at = time.monotonic()
        last = stack.bridge()
        stack.worker()
        exactly_once(ids, timeout=150)
        assert time.monotonic() - killed_at < 150
        journal_end = redis_client.xrevrange("eclean:journal:notifications", count=1)[0][0]
        wait_for(lambda: redis_client.get("eclean:bridge:bridge:checkpoint:notifications") == journal_end,
                 what="the checkpoint at the journal's end once everything is enqueued")
        assert last.proc.poll() is None
    finally:
        stack.stop()


def test_plain_publish_events_survive_a_worker_sigkill(stack, users, redis_client):
    stack.bridge()
    first = stack.worker()
    messages = raw_events(users["client"], 400, title="slow:0.01")
    for m in messages[:200]:
        publish_raw(redis_client, "notifications", m)
    ids = [m["id"] for m in messages]
    wait_for(lambda: effects(ids)[0] >= 20, what="some handled")
    first.signal(signal.SIGKILL, group=True)
    first.wait(10)
    for m in messages[200:]:
        publish_raw(redis_client, "notifications", m)
    stack.worker()
    exactly_once(ids, timeout=90)


def test_a_plain_publish_task_lost_by_the_broker_is_recovered_by_the_audit(stack, users, redis_client):
    """The BRPOP window, for an event that was never in the publisher's
    journal: the bridge recorded it when it accepted it, so the audit
    (EVENTS_AUDIT_DELAY 15 s in the suite) enqueues it again."""
    stack.bridge()
    messages = raw_events(users["client"], 3)
    for m in messages:
        publish_raw(redis_client, "notifications", m)
    wait_for(lambda: redis_client.llen("notifications") == 3, what="3 tasks queued")
    assert redis_client.rpop("notifications")  # popped and gone, as if by a worker's BRPOP
    stack.worker()
    exactly_once([m["id"] for m in messages], timeout=60)
    assert "enqueued again (audit)" in stack.logs("bridge")


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-persistence", "aof"])
def test_a_redis_that_restarted_empty_is_reported(tmp_path, users, clean_db, appendonly):
    server = RedisServer(appendonly=appendonly).start()
    port = free_port()
    stack = Stack(tmp_path, env={"REDIS_URL": server.url, "BRIDGE_METRICS_PORT": str(port)})
    client = redis.Redis.from_url(server.url)
    try:
        bridge = stack.bridge()
        stack.worker()
        ids = publish(users["client"], 20, client=client)
        exactly_once(ids)
        wait_for(lambda: client.get("eclean:bridge:bridge:checkpoint:notifications"), what="a checkpoint written")
        server.restart()
        bridge.wait_log(support.READY, count=2, timeout=60)
        more = publish(users["client"], 5, client=client)
        exactly_once(ids + more)
        lost = scrape(port).get("eclean_bridge_redis_state_lost_total")
        if appendonly:
            assert "Redis lost its data" not in bridge.log() and lost == 0
        else:
            assert bridge.log().count("Redis lost its data") == 1
            assert "ERROR" in next(x for x in bridge.log().splitlines() if "Redis lost its data" in x)
            assert lost == 1
    finally:
        stack.stop()
        client.close()
        server.cleanup()
