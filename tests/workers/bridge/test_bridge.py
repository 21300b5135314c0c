"""The bridge as a real process (python -m workers.bridge), no worker: what it
puts on the broker is inspected directly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from core import events

from ... import support
from ...support import envelope, publish_raw, wait_for

pytestmark = pytest.mark.slow
QUEUES = ("jobs", "notifications", "chat", "payments")


def queued(redis_client) -> list[str]:
    """Task ids waiting on the four topic queues."""
    ids = []
    for q in QUEUES:
        ids += [json.loads(m)["headers"]["id"] for m in redis_client.lrange(q, 0, -1)]
    return ids


def journaled(n: int, topic: str = "notifications") -> list[str]:
    ids = []
    for i in range(n):
        payload = events.build_event(topic, "notification.created", {"user_id": 1, "title": f"t{i}", "message": "m"})
        ids.append(json.loads(payload)["id"])
        events.send(topic, payload, ids[-1], "notification.created")
    return ids


def check(env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.bridge", "--check"], cwd=support.REPO,
                          capture_output=True, text=True, timeout=30, env=env)


def test_sigterm_exits_zero_after_flushing(tmp_path, redis_client):
    bridge = support.bridge(tmp_path)
    bridge.wait_log(support.READY)
    ids = []
    for i in range(50):
        m = envelope("chat.message", {"sender_id": 1, "recipient_id": 2, "text": str(i)})
        ids.append(m["id"])
        publish_raw(redis_client, "chat", m)
    bridge.signal(signal.SIGTERM)
    assert bridge.wait(10) == 0
    assert sorted(queued(redis_client)) == sorted(ids)
    assert "stopped cleanly" in bridge.log()
    bridge.stop()


def test_sigint_exits_zero(tmp_path, redis_client):
    bridge = support.bridge(tmp_path)
    bridge.wait_log(support.READY)
    bridge.signal(signal.SIGINT)
    assert bridge.wait(10) == 0
    bridge.stop()


def test_events_published_while_down_are_replayed_from_the_journal_once(tmp_path, redis_client, db):
    ids = journaled(30)
    assert redis_client.get("eclean:publisher:unheard:notifications") == b"30"
    bridge = support.bridge(tmp_path)
    try:
        bridge.wait_log(support.READY)
        wait_for(lambda: len(queued(redis_client)) == 30, what="30 replayed tasks")
        assert sorted(queued(redis_client)) == sorted(ids)
        # The checkpoint moved to the end of the journal.
        last = redis_client.xrevrange("eclean:journal:notifications", count=1)[0][0]
        assert redis_client.get("eclean:bridge:bridge:checkpoint:notifications") == last
    finally:
        assert bridge.stop() == 0
    more = journaled(5)
    again = support.bridge(tmp_path, name="bridge-again")
    try:
        again.wait_log(support.READY)
        wait_for(lambda: len(queued(redis_client)) == 35, what="only the 5 new events")
        time.sleep(0.5)
        assert sorted(queued(redis_client)) == sorted(ids + more)
        assert "Replayed 5 journal entries of notifications" in again.log()
    finally:
        again.stop()


def test_two_bridges_enqueue_each_event_once(tmp_path, redis_client, db):
    one = support.bridge(tmp_path, name="one", env={"BRIDGE_NAME": "one"})
    two = support.bridge(tmp_path, name="two", env={"BRIDGE_NAME": "two"})
    try:
        one.wait_log(support.READY)
        two.wait_log(support.READY)
        ids = journaled(200)
        raw = [envelope("chat.message", {"sender_id": 1, "recipient_id": 2, "text": "x"}) for _ in range(100)]
        for m in raw:
            assert publish_raw(redis_client, "chat", m) == 2
        ids += [m["id"] for m in raw]
        wait_for(lambda: len(queued(redis_client)) >= 300, what="300 tasks")
        time.sleep(1.0)  # anything doubled would show up by now
        assert sorted(queued(redis_client)) == sorted(ids)
    finally:
        assert one.stop() == 0 and two.stop() == 0


def test_health_check(tmp_path, redis_client):
    result = check()
    assert result.returncode == 1 and "no subscriber" in result.stderr
    bridge = support.bridge(tmp_path)
    try:
        bridge.wait_log(support.READY)
        result = wait_for(lambda: (r := check()).returncode == 0 and r, what="healthy check")
        assert "healthy: subscribed to ['jobs', 'notifications', 'chat', 'payments']" in result.stdout
        bridge.signal(signal.SIGSTOP)  # subscribed, but its loop is frozen
        wait_for(lambda: check().returncode == 1, timeout=15, what="heartbeat to expire")
        assert "no heartbeat" in check().stderr
        bridge.signal(signal.SIGCONT)
        wait_for(lambda: check().returncode == 0, what="healthy again")
    finally:
        bridge.signal(signal.SIGCONT)
        bridge.stop()


def test_bridge_waits_for_redis_instead_of_crashing(tmp_path, redis_client):
    from devtools.redis_server import RedisServer, free_port

    port = free_port()
    server = RedisServer(port=port)
    bridge = support.bridge(tmp_path, env={"REDIS_URL": server.url})
    try:
        wait_for(lambda: "reconnecting in" in bridge.log(), what="a reconnect attempt")
        assert bridge.proc.poll() is None
        server.start()
        bridge.wait_log(support.READY, timeout=40)
    finally:
        assert bridge.stop() == 0
        server.cleanup()
    assert server.password not in bridge.log()
