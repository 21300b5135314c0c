"""Start-up checks shared by the bridge and the worker."""

from __future__ import annotations

import redis

from e_clean_backend import redis_config


class CredentialsRefused(SystemExit):
    """Redis answered but refused our user/password: waiting will not fix it."""


def check_credentials(url: str) -> bool:
    """PING ``url``. Returns False when Redis is unreachable (it may be
    starting), True when it answers; raises :class:`CredentialsRefused` with a
    one-line message naming the variables to set when it rejects us."""
    client = redis_config.client(url, socket_connect_timeout=3)
    try:
        client.ping()
        return True
    except (redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError) as exc:
        raise CredentialsRefused(redis_config.credential_error_message(url, exc)) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise CredentialsRefused(redis_config.credential_error_message(url, exc)) from None
        raise
    except redis.ConnectionError:
        return False
    finally:
        client.close()
