"""Guarded work-arounds applied by the Celery app: one for kombu 5.7's Redis
transport, one for Celery's display of its settings (at the end).

When Redis goes away (a restart), Celery closes the broken connection, and
kombu still uses the closed channel afterwards: it restores the worker's
unacked messages while closing it, and acks tasks that finish after the
reconnect through it. The channel's ``connection`` (or that connection's
``client``) is already ``None`` by then, so building a Redis client fails with
``AttributeError: 'NoneType' object has no attribute 'hostname'`` / ``'client'``
in ``Channel._connparams``. Celery and kombu guard these paths against
*connection* errors only, so the AttributeError escapes and the worker dies
with "Unrecoverable error" instead of reconnecting (seen in tests/chaos, Redis
restarted mid-stream; the same failure is reported upstream as kombu#582 and
kombu#970).

The fix is at that one spot: a closed channel raises the connection error
every caller already handles. Nothing is lost: a message that could not be
restored or acked stays in kombu's unacked hash in Redis and returns to its
queue after the visibility timeout, like a killed worker's; handlers are
idempotent, so one handled twice still has one effect.
"""

from __future__ import annotations

import redis
from celery.app import utils as celery_app_utils
from kombu.transport import redis as kombu_redis

from e_clean_backend.redis_config import mask_urls

_original = kombu_redis.Channel._connparams


def _connparams_of_open_channel(self, asynchronous=False):
    if self.connection is None or self.connection.client is None:
        raise redis.ConnectionError("the broker channel is closed (its connection was lost)")
    return _original(self, asynchronous=asynchronous)


def apply() -> None:
    kombu_redis.Channel._connparams = _connparams_of_open_channel


def mask_urls_in_shown_settings() -> None:
    """Celery masks the password of ``broker_url`` only, when it shows its
    configuration (``celery inspect conf``, Flower's worker pages): mask it in
    every value that is a URL with credentials, at any depth."""
    original = celery_app_utils.filter_hidden_settings
    if getattr(original, "masks_urls", False):
        return

    def filter_hidden_settings(conf):
        return mask_urls(original(conf))

    filter_hidden_settings.masks_urls = True
    celery_app_utils.filter_hidden_settings = filter_hidden_settings
