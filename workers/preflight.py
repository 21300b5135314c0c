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
    except (redis.ResponseError, *_REFUSED) as exc:
        if is_refusal(exc):
            raise CredentialsRefused(message(url, exc)) from None
        raise
    except redis.ConnectionError:
        return False
    finally:
        client.close()


_REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError)


def is_refusal(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is Redis refusing our user/password:
    a wrong password, a password Redis now requires, an ACL that shuts us out."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, _REFUSED):
            return True
        if isinstance(exc, redis.ResponseError) and any(k in str(exc) for k in ("NOAUTH", "WRONGPASS", "NOPERM")):
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
