"""Real-time notifications: what a socket receives, and pushing it from sync code.

The database is the source of truth; the socket is the fast path. A handler
commits notification rows, and ``transaction.on_commit`` hands them to
:func:`push`, which sends each to its user's group on the channel layer
(``notifications.user.<id>``). A push that fails is logged and counted and
nothing else: the effect is committed, and the client's resume (see
``core/consumers.py``) fetches whatever the fast path dropped.

Why a thread: ``async_to_sync(layer.group_send)`` from a sync Celery worker
runs each call on a fresh event loop, and channels_redis keeps its connection
pool per loop, so every call connects to Redis, authenticates and disconnects
(measured in ``tests/realtime/test_push.py``). One daemon thread per process
runs one event loop for the life of the process and keeps one channel layer
and its connection on it; pushes are handed to it with
``call_soon_threadsafe`` onto a bounded queue, so a handler never waits on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Iterable

log = logging.getLogger(__name__)

GROUP_PREFIX = "notifications.user."
# A Redis that hangs must not pile up pushes in memory: past this many
# waiting, new ones are dropped (counted); the resume delivers them instead.
MAX_IN_FLIGHT = 2000
SEND_TIMEOUT = 5.0


def group_name(user_id: int) -> str:
    """The channel-layer group of one user's sockets (every open tab)."""
    return f"{GROUP_PREFIX}{int(user_id)}"


def payload(notification) -> dict:
    """The JSON a socket receives for one notification (ARCHITECTURE.md's fields, plus read)."""
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notification.title,
        "message": notification.message,
        "created_at": notification.created_at.isoformat(),
        "event_id": str(notification.event_id),
        "read": notification.read,
    }


class Pusher:
    """One event loop thread per process, holding one channel layer.

    Pushes go through one bounded queue to ``SENDERS`` sender tasks, so the
    layer's connection pool holds at most that many connections however
    bursty the handlers are (a coroutine per push would take a pooled
    connection each while they overlap). Started lazily, and again in a
    forked child (Celery's prefork pool forks after import): a loop thread
    does not survive ``fork``.
    """

    SENDERS = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._layer = None
        self.sent = 0
        self.failed = 0

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._pid == os.getpid() and self._loop is not None:
            return self._loop
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

                loop = asyncio.new_event_loop()
                # Our own instance, not the process-wide cached one: a layer
                # inherited over fork would hold the parent's sockets.
                self._layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue(MAX_IN_FLIGHT)
                    for _ in range(self.SENDERS):
                        loop.create_task(self._sender())
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=run, name="realtime-push", daemon=True).start()
                started.wait(10)
                self._loop, self._pid = loop, os.getpid()
        return self._loop

    def push(self, notifications: Iterable) -> None:
        """Queue each committed notification for its user's group; never raises, never waits on Redis."""
        try:
            loop = self._ensure_started()
            messages = [(group_name(n.user_id), {"type": "notification.push", "notification": payload(n)})
                        for n in notifications]
            loop.call_soon_threadsafe(self._enqueue, messages)
        except Exception as exc:  # noqa: BLE001 - a push never fails the event
            self._failed(None, f"{type(exc).__name__}: {exc}")

    def _enqueue(self, messages) -> None:
        for item in messages:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self._failed(item[1]["notification"]["id"], "too many pushes waiting")

    async def _sender(self) -> None:
        while True:
            group, message = await self._queue.get()
            try:
                await asyncio.wait_for(self._layer.group_send(group, message), SEND_TIMEOUT)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001
                # redis-py's messages name host and port, never the password.
                self._failed(message["notification"]["id"], f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _failed(self, notification_id, reason: str) -> None:
        self.failed += 1
        log.warning("realtime push failed (notification %s, %d failed so far): %s; "
                    "the client's resume will deliver it", notification_id, self.failed, reason)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued push was sent or failed (tests, benchmarks)."""
        loop = self._loop
        if loop is None or self._pid != os.getpid():
            return

        async def drained() -> None:
            await asyncio.sleep(0)  # let call_soon_threadsafe'd enqueues run first
            await self._queue.join()

        asyncio.run_coroutine_threadsafe(asyncio.wait_for(drained(), timeout), loop).result(timeout + 1)


pusher = Pusher()


def push(notifications: Iterable) -> None:
    """Push committed notifications to their users' sockets. Call from
    ``transaction.on_commit`` only: a rolled-back row must never reach a browser."""
    pusher.push(notifications)


class RedisLossInOneLine(logging.Filter):
    """channels_redis's pub/sub receiver logs a traceback when Redis goes
    away; redis-py then reconnects and re-subscribes by itself, and the
    sockets' re-check fetches what was published meanwhile. One line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        import redis

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
            record.msg = f"{record.getMessage()}: lost Redis ({type(exc).__name__}); reconnecting and re-subscribing"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def quiet_redis_loss() -> None:
    """Install :class:`RedisLossInOneLine` on the channel layer's logger (the web process)."""
    logging.getLogger("channels_redis.pubsub").addFilter(RedisLossInOneLine())


def check_channel_layer() -> None:
    """Fail fast when Redis refuses the channel layer's credentials.

    The same check and one-line message as the bridge and the worker
    (``workers.preflight``), on the channel layer's own address, so a wrong
    ``REDIS_PASSWORD`` stops the web process at start instead of leaving it
    serving pages whose sockets never receive anything. A Redis that is only
    down is waited for by the layer itself.
    """
    from django.conf import settings

    from workers.preflight import check_credentials

    for host in settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]:
        if not check_credentials(host["address"]):
            log.warning("Redis for the channel layer is not reachable yet; sockets connect once it is")
