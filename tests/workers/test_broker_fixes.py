"""The kombu work-around (workers/broker_fixes.py) at the spot it changes."""

import pytest
import redis
from kombu.transport import redis as kombu_redis

import workers.celery  # noqa: F401 - applies the fix


def test_a_closed_channel_raises_a_connection_error_not_attribute_error(redis_server):
    from kombu import Connection

    with Connection(redis_server.url) as conn:
        channel = conn.default_channel
        assert channel._connparams()["port"] == redis_server.port  # an open channel is untouched
        transport = channel.connection
        channel.connection = None  # what Celery leaves behind after a lost connection
        try:
            with pytest.raises(redis.ConnectionError):
                channel._connparams()
        finally:
            channel.connection = transport
        # ... which is an error kombu counts as a connection error
        assert issubclass(redis.ConnectionError, kombu_redis.get_redis_error_classes()[0])


def test_the_unacked_bookkeeping_reuses_one_client_per_pool(redis_server):
    """kombu made a new redis.Redis per ack and per arriving message; the
    channel of a redis:// URL is ours and keeps one, until its pool changes."""
    from kombu import Connection

    from workers import broker_fixes

    with Connection(redis_server.url) as conn:
        channel = conn.default_channel
        assert isinstance(channel, broker_fixes.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.ping()
        with channel.qos.pipe_or_acquire() as pipe:
            assert pipe.ping().execute() == [True]
        given = object()
        with channel.conn_or_acquire(given) as client:
            assert client is given  # a caller's own client is used as is
        channel._disconnect_pools()  # what a reconnect does
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_both_schemes_of_the_broker_url_get_the_fixed_channel(scheme):
    from kombu.transport import get_transport_cls

    from workers import broker_fixes

    assert get_transport_cls(scheme).Channel is broker_fixes.Channel
