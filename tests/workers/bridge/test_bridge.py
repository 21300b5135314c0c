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
from ...support import envelope, publish_raw, scrape, wait_for

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


def test_events_published_while_down_are_replayed_from_the_journal_once(tmp_path, redis_client, clean_db):
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


def test_two_bridges_enqueue_each_event_once(tmp_path, redis_client, clean_db):
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


# --- claims held by another bridge, accounting, conflicts (issue 8) ----------

DEAD_TOKEN = "deadbeefdeadbeef"


def plant_dead_claim(redis_client, topic: str, payload, ttl: float) -> str:
    """The pending claim a bridge leaves when it is SIGKILLed between claim and enqueue."""
    from workers.bridge.flusher import digest
    from workers.envelope import parse

    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    event = parse(topic, raw)
    redis_client.set(f"eclean:claim:{event.id}", f"p|{DEAD_TOKEN}|{digest(event)}", px=int(ttl * 1000))
    return event.id


def stats(bridge) -> dict:
    import ast

    line = [x for x in bridge.log().splitlines() if "stopped cleanly" in x][-1]
    return ast.literal_eval(line[line.index("{"):line.rindex("}") + 1])


def test_an_event_claimed_by_a_dead_bridge_is_enqueued_when_its_claim_expires(tmp_path, redis_client, clean_db):
    """A claim pending under another token is not a duplicate: its holder may
    have died before enqueueing. Live (plain PUBLISH) and journaled alike."""
    from devtools.redis_server import free_port

    live = envelope("chat.message", {"sender_id": 1, "recipient_id": 2, "text": "claimed, never sent"})
    payload = events.build_event("jobs", "job.created", {"job_id": 7})
    journaled_id = json.loads(payload)["id"]
    ttl = 4.0
    plant_dead_claim(redis_client, "chat", live, ttl)
    plant_dead_claim(redis_client, "jobs", payload.encode() if isinstance(payload, str) else payload, ttl)
    planted_at = time.monotonic()
    port = free_port()
    bridge = support.bridge(tmp_path, env={"BRIDGE_METRICS_PORT": str(port)})
    try:
        bridge.wait_log(support.READY)
        events.send("jobs", payload, journaled_id, "job.created")
        assert publish_raw(redis_client, "chat", live) == 1
        time.sleep(1.5)
        assert queued(redis_client) == [], "enqueued while another bridge's claim was still pending"
        # Not proven enqueued: the checkpoint stays before the journaled one, and the lag shows it.
        assert redis_client.get("eclean:bridge:bridge:checkpoint:jobs") is None
        assert scrape(port)['eclean_bridge_journal_lag_seconds{topic="jobs"}'] >= 1.0
        assert scrape(port)["eclean_bridge_events_unresolved"] == 2
        wait_for(lambda: len(queued(redis_client)) == 2, timeout=ttl + 10, what="both events enqueued")
        assert time.monotonic() - planted_at < ttl + 5, "not within seconds of the claim expiring"
        assert sorted(queued(redis_client)) == sorted([live["id"], journaled_id])
        last = redis_client.xrevrange("eclean:journal:jobs", count=1)[0][0]
        wait_for(lambda: redis_client.get("eclean:bridge:bridge:checkpoint:jobs") == last, what="checkpoint moved")
        wait_for(lambda: scrape(port)['eclean_bridge_journal_lag_seconds{topic="jobs"}'] == 0, what="lag back to 0")
        time.sleep(1.0)
        assert len(queued(redis_client)) == 2
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(10) == 0
        s = stats(bridge)
        assert s["taken_over"] == 2 and s["enqueued"] == 2
    finally:
        bridge.stop()


def test_journal_lag_is_zero_while_idle(tmp_path, redis_client, clean_db):
    """The lag is the age of the oldest journal entry the checkpoint does not
    cover: caught up and idle, it stays 0 however long ago the last event was."""
    from devtools.redis_server import free_port

    port = free_port()
    bridge = support.bridge(tmp_path, env={"BRIDGE_METRICS_PORT": str(port)})
    try:
        bridge.wait_log(support.READY)
        journaled(5)
        wait_for(lambda: len(queued(redis_client)) == 5, what="5 tasks")
        time.sleep(4)  # idle
        for _ in range(3):
            metrics = scrape(port)
            for topic in ("notifications", *QUEUES):
                assert metrics.get(f'eclean_bridge_journal_lag_seconds{{topic="{topic}"}}') == 0, (topic, metrics)
            time.sleep(1)
    finally:
        bridge.stop()


def test_every_message_is_counted_once_and_a_reused_id_is_a_dead_letter(tmp_path, redis_client, clean_db):
    from core.models import DeadLetter
    from workers.bridge.flusher import digest
    from workers.envelope import parse

    bridge = support.bridge(tmp_path)
    bridge.wait_log(support.READY)
    try:
        distinct = [envelope("job.created", {"job_id": i}) for i in range(1, 5)]
        reordered = {k: distinct[1][k] for k in reversed(list(distinct[1]))}  # same content, other JSON
        reused = {**distinct[3], "data": {"job_id": 99}}
        burst = [*distinct, distinct[0], distinct[0], reordered, distinct[2], distinct[2], reused, b"{nope"]
        bridge.signal(signal.SIGSTOP)  # the burst lands in one batch
        for m in burst:
            publish_raw(redis_client, "jobs", m)
        bridge.signal(signal.SIGCONT)
        wait_for(lambda: len(queued(redis_client)) == 4, what="4 tasks")
        # Later, in another batch: an identical re-send (silent) and a reuse of a done id.
        publish_raw(redis_client, "jobs", distinct[0])
        other_topic = {**distinct[0], "type": "chat.message",
                       "data": {"sender_id": 1, "recipient_id": 2, "text": "same id, other topic"}}
        publish_raw(redis_client, "chat", other_topic)
        wait_for(lambda: DeadLetter.objects.filter(reason="conflicting_duplicate").count() == 2,
                 what="two conflicting_duplicate dead letters")
        bridge.signal(signal.SIGTERM)
        assert bridge.wait(10) == 0
        s = stats(bridge)
        assert s["received"] == len(burst) + 2
        assert (s["enqueued"], s["duplicates"], s["rejected"]) == (4, 6, 3)
        assert s["received"] == s["enqueued"] + s["duplicates"] + s["rejected"]
        assert sorted(queued(redis_client)) == sorted(m["id"] for m in distinct)
        first = digest(parse("jobs", json.dumps(distinct[3])))
        letter = DeadLetter.objects.get(reason="conflicting_duplicate", topic="jobs")
        assert (letter.stage, letter.event_id) == ("bridge", distinct[3]["id"])
        assert first in letter.detail and digest(parse("jobs", json.dumps(reused))) in letter.detail
        assert json.loads(bytes(letter.payload) if not isinstance(letter.payload, str) else letter.payload) == reused
        letter = DeadLetter.objects.get(reason="conflicting_duplicate", topic="chat")
        assert digest(parse("jobs", json.dumps(distinct[0]))) in letter.detail
        assert DeadLetter.objects.count() == 3  # the two conflicts and the non-JSON; identical re-sends are silent
    finally:
        bridge.signal(signal.SIGCONT)
        bridge.stop()


def test_a_refused_broker_password_names_celery_broker_url(tmp_path, redis_client, redis_server):
    wrong = redis_server.url.replace("redis://:", "redis://:wrong-", 1)
    bridge = support.bridge(tmp_path, env={"CELERY_BROKER_URL": wrong})
    try:
        assert bridge.wait(30) == 3
        log = bridge.log()
        assert "CELERY_BROKER_URL" in log and "REDIS_PASSWORD" not in log, log
        assert redis_server.password not in log and "wrong-" not in log
    finally:
        bridge.stop()


def test_control_characters_in_a_rejected_payload_cannot_forge_log_lines(tmp_path, redis_client, clean_db):
    bridge = support.bridge(tmp_path)
    try:
        bridge.wait_log(support.READY)
        forged = b'{"id": "x\nERROR forged line\x1b[2J", "type": "job.created"\r\nWARNING also forged\xe2\x80\xa8'
        publish_raw(redis_client, "jobs", forged)
        publish_raw(redis_client, "jobs", b'{"id": "%s", "type": "job.\\nexploded", "data": {}}' % b"a" * 1)
        wait_for(lambda: bridge.log().count("Rejected message") == 2, what="two rejections logged")
        log = bridge.log()
        assert "\x1b" not in log and "\r" not in log and "\u2028" not in log
        assert not any(line.startswith(("ERROR forged", "WARNING also")) for line in log.splitlines())
        assert "\\x0aERROR forged line\\x1b[2J" in log
    finally:
        bridge.stop()


def test_the_bridge_warns_when_a_prefetched_task_can_outlast_the_visibility_timeout(tmp_path, redis_client):
    # The suite's settings: time limit 8 s, prefetch 4, visibility timeout 10 s.
    short = support.bridge(tmp_path, name="short")
    ok = support.bridge(tmp_path, name="ok", env={"CELERY_VISIBILITY_TIMEOUT": "40", "EVENTS_AUDIT_DELAY": "60"})
    try:
        short.wait_log(support.READY)
        ok.wait_log(support.READY)
        assert "raise CELERY_VISIBILITY_TIMEOUT above 32s" in short.log()
        assert "CELERY_VISIBILITY_TIMEOUT" not in ok.log()
    finally:
        short.stop()
        ok.stop()
