"""Enqueue-once claims (workers/bridge/claims.py) on the real Redis."""

import redis

from workers.bridge.claims import Claims


def test_claims_are_exclusive_and_survive_a_reconnect(redis_server, redis_client):
    mine, theirs = Claims(30, 3600), Claims(30, 3600)
    mine.bind(redis.Redis.from_url(redis_server.url))
    theirs.bind(redis.Redis.from_url(redis_server.url))
    assert mine.take(["a", "b"]) == [True, True]
    assert theirs.take(["a", "b", "c"]) == [False, False, True]
    # The batch failed mid-enqueue and the bridge reconnected: same Claims,
    # new connection. Its own pending claims still let the batch through.
    mine.bind(redis.Redis.from_url(redis_server.url))
    assert mine.take(["a", "b"]) == [True, True]
    # Confirmed claims are done for everyone, the confirming bridge included.
    mine.confirm(["a", "b"])
    mine.flush()
    assert redis_client.get("eclean:claim:a") == b"done"
    assert 3500 < redis_client.ttl("eclean:claim:a") <= 3600
    assert mine.take(["a"]) == [False] and theirs.take(["b"]) == [False]
    # Pending claims expire: a bridge that died mid-batch does not block the replay.
    assert 0 < redis_client.ttl("eclean:claim:c") <= 30
