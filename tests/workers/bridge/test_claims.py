"""Enqueue-once claims (workers/bridge/claims.py) on the real Redis."""

import redis

from workers.bridge.claims import DONE, HELD, MINE, Claims


def c(event_id, digest="d1", topic="jobs", payload=b"{}"):
    return (event_id, digest, topic, payload)


def test_claims_are_exclusive_and_survive_a_reconnect(redis_server, redis_client):
    mine, theirs = Claims(30, 3600), Claims(30, 3600)
    mine.bind(redis.Redis.from_url(redis_server.url))
    theirs.bind(redis.Redis.from_url(redis_server.url))
    assert mine.take([c("a"), c("b")]) == [MINE, MINE]
    # Pending under another token proves nothing yet: HELD, not a duplicate.
    assert theirs.take([c("a"), c("b"), c("c")]) == [HELD, HELD, MINE]
    # The batch failed mid-enqueue and the bridge reconnected: same Claims,
    # new connection. Its own pending claims still let the batch through.
    mine.bind(redis.Redis.from_url(redis_server.url))
    assert mine.take([c("a"), c("b")]) == [MINE, MINE]
    # Confirmed claims are done for everyone, the confirming bridge included.
    mine.confirm([("a", "d1"), ("b", "d1")])
    mine.flush()
    assert redis_client.get("eclean:claim:a") == b"d|d1"
    assert 3500 < redis_client.ttl("eclean:claim:a") <= 3600
    assert mine.take([c("a")]) == [DONE] and theirs.take([c("b")]) == [DONE]
    # Pending claims expire: a bridge that died mid-batch does not block the replay.
    assert 0 < redis_client.ttl("eclean:claim:c") <= 30


def test_a_claim_held_by_a_dead_bridge_can_be_taken_once_it_expires(redis_server, redis_client):
    dead, alive = Claims(1, 3600), Claims(1, 3600)
    dead.bind(redis.Redis.from_url(redis_server.url))
    alive.bind(redis.Redis.from_url(redis_server.url))
    assert dead.take([c("x")]) == [MINE]
    assert alive.take([c("x")]) == [HELD]
    redis_client.pexpire("eclean:claim:x", 1)
    import time

    time.sleep(0.05)
    assert alive.take([c("x")]) == [MINE]


def test_a_reused_id_with_other_content_returns_the_held_digest(redis_server, redis_client):
    one, two = Claims(30, 3600), Claims(30, 3600)
    one.bind(redis.Redis.from_url(redis_server.url))
    two.bind(redis.Redis.from_url(redis_server.url))
    assert one.take([c("e", "aaaa")]) == [MINE]
    assert one.take([c("e", "bbbb")]) == [b"aaaa"]  # pending, ours, other content
    assert two.take([c("e", "bbbb")]) == [b"aaaa"]
    one.confirm([("e", "aaaa")])
    one.flush()
    assert two.take([c("e", "bbbb")]) == [b"aaaa"]  # done, other content
    assert two.take([c("e", "aaaa")]) == [DONE]


def test_each_new_claim_is_recorded_for_the_audit_once(redis_server, redis_client):
    one, two = Claims(30, 3600), Claims(30, 3600)
    one.bind(redis.Redis.from_url(redis_server.url))
    two.bind(redis.Redis.from_url(redis_server.url))
    one.take([c("p", topic="chat", payload=b"first"), c("q", topic="jobs", payload=b"second")])
    one.take([c("p", topic="chat", payload=b"first")])  # a retried batch: not recorded again
    two.take([c("p", topic="chat", payload=b"first")])
    assert [f[b"e"] for _, f in redis_client.xrange("eclean:accepted:chat")] == [b"first"]
    assert [f[b"e"] for _, f in redis_client.xrange("eclean:accepted:jobs")] == [b"second"]
