"""The one place that turns the environment into a Redis URL and connection options.

Django settings, the Celery broker, the bridge and the publisher all call
:func:`redis_url` and :func:`connection_options`. The system this replaces
built the URL in three places; one of them dropped the password and the
subscriber crash-looped on NOAUTH. Keeping one builder makes that impossible.

No password default lives here: a Redis without a password is reached by
setting none, never by a value baked into the code.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from .env import ImproperlyConfigured, env_bool, env_int, env_secret, env_str

# What a person should set when Redis refuses us. Named in every credential
# error so the fix is one read away.
CREDENTIAL_HINT = (
    "set REDIS_PASSWORD (or REDIS_PASSWORD_FILE, REDIS_USERNAME for an ACL user), "
    "or a REDIS_URL of the form redis://[user]:password@host:port/db"
)


def redis_url(env: Mapping[str, str] | None = None) -> str:
    """Return the Redis URL: ``REDIS_URL`` when set, else one built from parts.

    The user name and password are percent-quoted, so any character (``@``,
    ``:``, ``/``, ``#``, ``%`` ...) survives the round trip through the URL.
    """
    env = os.environ if env is None else env
    explicit = env.get("REDIS_URL")
    if explicit:
        if urlsplit(explicit).scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                "REDIS_URL must start with redis://, rediss:// or unix://"
            )
        return explicit
    host = env_str("REDIS_HOST", "localhost", env)
    port = env_int("REDIS_PORT", 6379, env, minimum=1, maximum=65535)
    db = env_int("REDIS_DB", 0, env, minimum=0)
    scheme = "rediss" if env_bool("REDIS_SSL", False, env) else "redis"
    username = env.get("REDIS_USERNAME") or ""
    # REDIS_PASSWORD_FILE wins: Docker/Kubernetes secrets are mounted files.
    password = env_secret("REDIS_PASSWORD", env)
    auth = ""
    if password is not None:
        auth = f"{quote(username, safe='')}:{quote(password, safe='')}@"
    elif username:
        auth = f"{quote(username, safe='')}@"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # bare IPv6 address
    return f"{scheme}://{auth}{host}:{port}/{db}"


def keepalive_options() -> dict[int, int]:
    """TCP keepalive tuning from the ``socket`` constants this platform has.

    The old subscriber passed raw integers (1, 2, 3) as option keys; on Linux
    those are TCP_NODELAY/TCP_MAXSEG/TCP_CORK and the kernel answered EINVAL
    ("Error 22"). Only named constants that exist here are used; macOS calls
    the idle time TCP_KEEPALIVE.
    """
    wanted = (
        (("TCP_KEEPIDLE", "TCP_KEEPALIVE"), 60),  # idle seconds before probing
        (("TCP_KEEPINTVL",), 10),  # seconds between probes
        (("TCP_KEEPCNT",), 6),  # probes before the peer is declared dead
    )
    options: dict[int, int] = {}
    for names, value in wanted:
        for name in names:
            const = getattr(socket, name, None)
            if const is not None:
                options[const] = value
                break
    return options


def connection_options(env: Mapping[str, str] | None = None) -> dict:
    """Keyword arguments for ``redis.Redis`` shared by every client we open.

    ``retry_on_timeout`` stays off on purpose: kombu only pipelines publishes
    (``Producer.batch()``) on connections that never replay a write, and a
    replayed publish would be a duplicated task.
    """
    env = os.environ if env is None else env
    return {
        "socket_connect_timeout": env_int("REDIS_CONNECT_TIMEOUT", 5, env, minimum=1),
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        # A PING on idle connections before use: a half-dead socket is found
        # before a command is lost on it, not after.
        "health_check_interval": env_int("REDIS_HEALTH_CHECK_INTERVAL", 10, env, minimum=1),
    }


# Key prefix of the channel layer: its groups and channels never collide with
# the journal, claims or Celery queues on the same Redis.
CHANNEL_LAYER_PREFIX = "eclean:ws:"


def channel_layers(env: Mapping[str, str] | None = None) -> dict:
    """Django Channels' ``CHANNEL_LAYERS`` on the same Redis as everything else.

    The system this replaces configured its channel layer by hand and lost the
    password there too. Here the layer gets the very URL (quoted password, ACL
    user, ``rediss://``, password file) and the very connection options that
    the broker and the bridge get: a second place to build them is exactly the
    bug. ``hosts`` entries that are dicts go to redis-py's
    ``ConnectionPool.from_url(address, **options)``.
    """
    env = os.environ if env is None else env
    host = {"address": redis_url(env), **connection_options(env)}
    return {
        "default": {
            # The pub/sub layer: a group is a Redis channel each web process
            # subscribes to, a group_send one PUBLISH. The list-based core
            # layer lost every message for one socket out of 1,000 in
            # bench/realtime.py (a known race of its shared per-process inbox,
            # django/channels#1244); it also needs no key expiry, and redis-py
            # re-subscribes by itself after a Redis restart. What pub/sub
            # drops while a process is down, the client's resume fetches.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [host], "prefix": CHANNEL_LAYER_PREFIX},
        }
    }


def redact(url: str) -> str:
    """The URL with its password replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


# scheme://[user]:password@ -- the password part up to the last @ before the host.
_CREDENTIALS_IN_URL = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^\s]*@")


def mask_urls(value, mask: str = "********"):
    """``value`` with the password of every ``scheme://user:password@host``
    in it masked, at any depth of dicts, lists and tuples: for anything that
    shows settings (Celery's ``inspect conf``, Flower, Django's debug page)."""
    if isinstance(value, str):
        return _CREDENTIALS_IN_URL.sub(lambda m: f"{m.group(1)}{mask}@", value)
    if isinstance(value, Mapping):
        return {k: mask_urls(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask_urls(v, mask) for v in value)
    return value


def credential_error_message(url: str, exc: Exception) -> str:
    """One line for a Redis that refused our credentials, naming the fix."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"Redis at {redact(url)} refused the connection credentials ({reason}): {CREDENTIAL_HINT}"


def client(url: str, **overrides):
    """A ``redis.Redis`` for ``url`` (settings.REDIS_URL, or the broker's) with the shared options."""
    import redis

    options = connection_options()
    options.update(overrides)
    return redis.Redis.from_url(url, **options)


__all__ = [
    "CREDENTIAL_HINT",
    "ImproperlyConfigured",
    "CHANNEL_LAYER_PREFIX",
    "channel_layers",
    "client",
    "connection_options",
    "credential_error_message",
    "keepalive_options",
    "redact",
    "redis_url",
]
