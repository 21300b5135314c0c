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
