"""CHANNEL_LAYERS comes from the one Redis builder: the seed lost the password there."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

from e_clean_backend import redis_config

SPECIAL = "p@ss:w/rd#%[] ?&="


def host(env) -> dict:
    return redis_config.channel_layers(env)["default"]["CONFIG"]["hosts"][0]


def test_the_layer_gets_the_same_url_and_options_as_every_client():
    env = {"REDIS_HOST": "redis.internal", "REDIS_PORT": "6380", "REDIS_DB": "2", "REDIS_USERNAME": "events",
           "REDIS_PASSWORD": SPECIAL}
    h = host(env)
    assert h["address"] == redis_config.redis_url(env)
    parts = urlsplit(h["address"])
    assert (unquote(parts.username), unquote(parts.password)) == ("events", SPECIAL)
    assert (parts.hostname, parts.port, parts.path) == ("redis.internal", 6380, "/2")
    options = dict(h)
    options.pop("address")
    assert options == redis_config.connection_options(env)
    # only named, existing keepalive constants (the seed's raw 1, 2, 3 were EINVAL)
    assert set(options["socket_keepalive_options"]) <= {getattr(socket, n) for n in
                                                       ("TCP_KEEPIDLE", "TCP_KEEPALIVE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
                                                       if hasattr(socket, n)}


def test_tls_password_file_and_explicit_url(tmp_path):
    secret = tmp_path / "redis-password"
    secret.write_text(SPECIAL + "\n")
    h = host({"REDIS_SSL": "1", "REDIS_PASSWORD_FILE": str(secret), "REDIS_PASSWORD": "ignored"})
    assert h["address"].startswith("rediss://") and unquote(urlsplit(h["address"]).password) == SPECIAL
    assert host({"REDIS_URL": "rediss://:x@cache:6379/0"})["address"] == "rediss://:x@cache:6379/0"


def test_own_key_prefix_and_the_settings_use_it():
    from django.conf import settings

    layer = settings.CHANNEL_LAYERS["default"]
    assert layer["CONFIG"]["prefix"] == redis_config.CHANNEL_LAYER_PREFIX == "eclean:ws:"
    assert layer["CONFIG"]["hosts"][0]["address"] == settings.REDIS_URL
    assert layer["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
