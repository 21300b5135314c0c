"""The one Redis URL/options builder (backend/e_clean_backend/redis_config.py)."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import pytest
import redis

from e_clean_backend import redis_config
from e_clean_backend.env import ImproperlyConfigured

NASTY = "p@ss:w/rd#%[]"


def test_defaults_without_password():
    assert redis_config.redis_url({}) == "redis://localhost:6379/0"


def test_redis_url_wins_over_parts():
    env = {"REDIS_URL": "redis://:x@cache:6380/2", "REDIS_HOST": "other", "REDIS_PASSWORD": "y"}
    assert redis_config.redis_url(env) == "redis://:x@cache:6380/2"


def test_every_part():
    env = {"REDIS_HOST": "redis", "REDIS_PORT": "6380", "REDIS_DB": "3", "REDIS_PASSWORD": "secret"}
    assert redis_config.redis_url(env) == "redis://:secret@redis:6380/3"


@pytest.mark.parametrize("password", [NASTY, "a b", "ünïcødé", "%41", "::@@//"])
def test_password_is_quoted_and_round_trips(password):
    url = redis_config.redis_url({"REDIS_PASSWORD": password})
    parts = urlsplit(url)
    assert parts.hostname == "localhost" and parts.port == 6379
    assert unquote(parts.password) == password
    # redis-py decodes it back to the same password
    kwargs = redis.connection.parse_url(url)
    assert kwargs["password"] == password


def test_acl_username():
    url = redis_config.redis_url({"REDIS_USERNAME": "events", "REDIS_PASSWORD": NASTY})
    kwargs = redis.connection.parse_url(url)
    assert (kwargs["username"], kwargs["password"]) == ("events", NASTY)


def test_username_without_password():
    assert redis_config.redis_url({"REDIS_USERNAME": "events"}) == "redis://events@localhost:6379/0"


def test_ssl_scheme():
    assert redis_config.redis_url({"REDIS_SSL": "true", "REDIS_PASSWORD": "x"}).startswith("rediss://:x@")
    assert redis_config.redis_url({"REDIS_SSL": "0"}).startswith("redis://")


def test_password_file_wins_and_drops_trailing_newline(tmp_path):
    secret = tmp_path / "redis_password"
    secret.write_text(NASTY + "\n")
    env = {"REDIS_PASSWORD_FILE": str(secret), "REDIS_PASSWORD": "ignored"}
    assert redis.connection.parse_url(redis_config.redis_url(env))["password"] == NASTY


def test_unreadable_password_file_names_the_variable(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="REDIS_PASSWORD_FILE"):
        redis_config.redis_url({"REDIS_PASSWORD_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("env, name", [
    ({"REDIS_PORT": "abc"}, "REDIS_PORT"),
    ({"REDIS_PORT": "70000"}, "REDIS_PORT"),
    ({"REDIS_DB": "-1"}, "REDIS_DB"),
    ({"REDIS_SSL": "maybe"}, "REDIS_SSL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
])
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(ImproperlyConfigured, match=name):
        redis_config.redis_url(env)


def test_ipv6_host_is_bracketed():
    assert redis_config.redis_url({"REDIS_HOST": "::1"}) == "redis://[::1]:6379/0"


def test_keepalive_keys_are_named_socket_constants():
    options = redis_config.keepalive_options()
    assert options, "this platform has TCP keepalive constants"
    named = {getattr(socket, n) for n in ("TCP_KEEPIDLE", "TCP_KEEPALIVE", "TCP_KEEPINTVL", "TCP_KEEPCNT")
             if hasattr(socket, n)}
    assert set(options) <= named
    # the old subscriber's raw keys 1, 2, 3 are TCP_NODELAY/MAXSEG/CORK on Linux
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert socket.TCP_KEEPIDLE in options and 1 not in options


def test_keepalive_options_really_apply_over_tcp(redis_server):
    client = redis_config.client(redis_server.url)
    try:
        assert client.ping()
        conn = client.connection_pool.get_connection()
        try:
            sock = conn._sock
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            for key, value in redis_config.keepalive_options().items():
                assert sock.getsockopt(socket.IPPROTO_TCP, key) == value
        finally:
            client.connection_pool.release(conn)
    finally:
        client.close()


def test_connection_options_keep_batch_publishing_possible():
    # kombu only pipelines publishes when writes are never replayed
    opts = redis_config.connection_options({})
    assert not opts.get("retry_on_timeout") and "retry" not in opts
    assert opts["socket_keepalive"] is True


def test_redact_hides_password_only():
    url = redis_config.redis_url({"REDIS_USERNAME": "u", "REDIS_PASSWORD": NASTY, "REDIS_HOST": "h"})
    red = redis_config.redact(url)
    assert NASTY not in red and "%40" not in red and "***" in red and "h:6379" in red and red.startswith("redis://u:")
    assert redis_config.redact("redis://h:1/0") == "redis://h:1/0"


def test_wrong_password_is_refused_with_a_message_naming_the_variable(redis_server):
    from workers.preflight import CredentialsRefused, check_credentials

    wrong = redis_config.redis_url(
        {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port), "REDIS_PASSWORD": "wrong-" + NASTY})
    with pytest.raises(CredentialsRefused) as info:
        check_credentials(wrong)
    message = str(info.value)
    assert "REDIS_PASSWORD" in message and "wrong-" not in message
    no_password = f"redis://127.0.0.1:{redis_server.port}/0"
    with pytest.raises(CredentialsRefused, match="REDIS_PASSWORD"):
        check_credentials(no_password)
    assert check_credentials(redis_server.url) is True
    assert check_credentials(f"redis://127.0.0.1:{_closed_port()}/0") is False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
