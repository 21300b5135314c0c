"""Start-up checks shared by the bridge and the worker, and the one test of
"Redis refused our credentials" that both use at any time."""

from __future__ import annotations

import os

import redis

from e_clean_backend import redis_config


class CredentialsRefused(SystemExit):
    """Redis answered but refused our user/password: waiting will not fix it."""


def check_credentials(url: str, message=redis_config.credential_error_message) -> bool:
    """PING ``url``. Returns False when Redis is unreachable (it may be
    starting), True when it answers; raises :class:`CredentialsRefused` with a
    one-line message naming the variables to set when it rejects us."""
    client = redis_config.client(url, socket_connect_timeout=3)
    try:
        client.ping()
        return True
    except REFUSED as exc:
        raise CredentialsRefused(message(url, exc)) from None
    except redis.ConnectionError:
        return False
    finally:
        client.close()


# Redis refusing our user/password: a wrong password (WRONGPASS, "invalid
# password"), a password Redis now requires (NOAUTH), an ACL that shuts us out
# (NOPERM). redis-py maps each reply to one of these classes.
REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError)


def is_refusal(exc: BaseException | None) -> bool:
    """Whether ``exc``, or what caused it (kombu wraps what redis-py raised),
    is Redis refusing our credentials: the one test of it, for every process."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, REFUSED):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def broker_refusal_message(url: str, exc: BaseException) -> str:
    """One line naming the variable to fix: CELERY_BROKER_URL when the broker
    has its own URL, else the REDIS_* variables it is built from."""
    if os.environ.get("CELERY_BROKER_URL"):
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (f"the broker at {redis_config.redact(url)} refused the connection credentials ({reason}): "
                "set the password in CELERY_BROKER_URL (redis://[user]:password@host:port/db)")
    return redis_config.credential_error_message(url, exc)
