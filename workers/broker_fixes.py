"""Guarded work-arounds applied by the Celery app: two for kombu 5.7's Redis
transport (a subclass of its channel, registered as the ``redis`` transport),
one for Celery's display of its settings (at the end).

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

from contextlib import contextmanager

import redis
from celery.app import utils as celery_app_utils
from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis

from e_clean_backend.redis_config import mask_urls


class Channel(kombu_redis.Channel):
    """kombu's Redis channel with two changes, each at one method."""

    _shared_client = None

    def _connparams(self, asynchronous=False):
        # A closed channel: the connection error every caller handles.
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker channel is closed (its connection was lost)")
        return super()._connparams(asynchronous=asynchronous)

    @contextmanager
    def conn_or_acquire(self, client=None):
        """One Redis client object per connection pool, not one per call.

        kombu builds a new ``redis.Redis`` (and its table of ~250 response
        callbacks) for every unacked-bookkeeping pipeline: twice per task
        message (``QoS.append`` when it arrives, ``QoS.ack`` when it is done),
        about a tenth of a worker's main process in bench/'s profile. The
        client holds no connection of its own (each command borrows one from
        the channel's pool), so keeping it changes no command and no round
        trip. ``self.pool`` is read on every call: a channel whose pools were
        dropped builds new ones (or, closed, raises as above) and a new client.
        """
        if client is not None:
            yield client
            return
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared.connection_pool is not pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel


# The URL schemes redis_config builds (REDIS_SSL gives rediss://).
SCHEMES = ("redis", "rediss")


def apply() -> None:
    """Make ``redis://`` and ``rediss://`` broker URLs use :class:`Transport`
    in this process."""
    name = f"{__name__}:Transport"
    for scheme in SCHEMES:
        if kombu_transport.TRANSPORT_ALIASES.get(scheme) != name:
            kombu_transport.TRANSPORT_ALIASES[scheme] = name
            kombu_transport._transport_cache.pop(scheme, None)  # resolved before us: resolve again


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
