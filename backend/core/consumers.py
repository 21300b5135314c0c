"""The ``/ws/notifications/`` socket: one logged-in user's notifications, live.

Protocol (JSON text frames; README "Real-time" has the full table):

client → server
    ``{"type": "resume", "last_id": N}``   on every (re)connect; 0 when it has none
    ``{"type": "read", "ids": [..]}`` or ``{"type": "read", "all": true}``
    ``{"type": "ping"}``
server → client
    ``{"type": "backlog", "notifications": [...], "unread": U}``   newest first, at most REALTIME_BACKLOG
    ``{"type": "notification", "id", "kind", "title", "message", "created_at", "event_id", "read",
    "notification": {the same fields}}``                           live, after commit
    ``{"type": "read", "ids": [..] | "all": true, "unread": U}``  to every tab of the user
    ``{"type": "pong"}``, ``{"type": "error", "error": "..."}``

Close codes: 4401 not logged in / session ended, 4429 too many messages,
1009 message too big, 1012 the server lost Redis (reconnect and resume). Close reasons never carry a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import realtime

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_RATE_LIMITED = 4429
CLOSE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012
MAX_READ_IDS = 500
# Ids this socket has sent, kept to send none twice; pruned to the newest half past this.
MAX_SENT_IDS = 2000



def live_message(notification: dict) -> dict:
    """A live notification frame: the contract's fields (id, kind, title,
    message, created_at, event_id) at the top level, and the same object under
    ``notification`` for the page, which renders backlog and live alike."""
    return {"type": "notification", **notification, "notification": notification}

class TokenBucket:
    """``rate`` messages per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class NotificationConsumer(AsyncWebsocketConsumer):
    """A user's notifications: backlog on resume, then live pushes, read marks to every tab."""

    async def __call__(self, scope, receive, send):
        # Redis going away breaks the layer's receive loop under the socket.
        # Close it as "service restart" with one log line instead of a
        # traceback per socket: the client reconnects and resumes from the
        # database, so nothing is lost.
        try:
            await super().__call__(scope, receive, send)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            log.warning("notification socket closed: the channel layer lost Redis (%s)", type(exc).__name__)
            try:
                await send({"type": "websocket.close", "code": CLOSE_SERVICE_RESTART})
            except Exception:  # noqa: BLE001 - the socket may be gone already
                pass

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Closing before accept answers the handshake with 403.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.group = realtime.group_name(user.pk)
        self.bucket = TokenBucket(settings.REALTIME_RATE, settings.REALTIME_BURST)
        self.sent: set[int] = set()
        self.floor: int | None = None  # the client's resume point; None before it sent one
        self.closing = False
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.checker = asyncio.ensure_future(self._recheck())

    async def disconnect(self, code) -> None:
        checker = getattr(self, "checker", None)
        if checker:
            checker.cancel()
        if getattr(self, "group", None):
            try:
                await self.channel_layer.group_discard(self.group, self.channel_name)
            except Exception as exc:  # noqa: BLE001 - Redis may be what went away
                log.info("group_discard failed on disconnect: %s", type(exc).__name__)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.closing:
            return
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > settings.REALTIME_MAX_MESSAGE_BYTES:
            await self._close(CLOSE_TOO_BIG, "message too big")
            return
        if not self.bucket.take():
            await self._close(CLOSE_RATE_LIMITED, "too many messages")
            return
        try:
            message = json.loads(text_data if text_data is not None else bytes_data)
            kind = message["type"]
        except (ValueError, TypeError, KeyError):
            await self._send({"type": "error", "error": "expected a JSON object with a type"})
            return
        if kind == "resume":
            last_id = message.get("last_id", 0)  # absent: nothing shown yet; false, "" or [] are errors
            if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id < 0:
                await self._send({"type": "error", "error": "last_id must be a whole number >= 0"})
                return
            await self._resume(last_id)
        elif kind == "read":
            await self._read(message)
        elif kind == "ping":
            await self._send({"type": "pong"})
        else:
            await self._send({"type": "error", "error": "unknown type"})

    # --- messages from the channel layer (group sends) ------------------------

    async def notification_push(self, event) -> None:
        notification = event["notification"]
        if notification["id"] in self.sent:
            return
        self._mark_sent([notification["id"]])
        await self._send(live_message(notification))

    async def notifications_read(self, event) -> None:
        await self._send({"type": "read", **{k: v for k, v in event.items() if k != "type"}})

    # --- duties -----------------------------------------------------------------

    async def _resume(self, last_id: int) -> None:
        notifications, unread = await database_sync_to_async(self._backlog)(last_id)
        self.floor = last_id
        fresh = [n for n in notifications if n["id"] not in self.sent]
        self._mark_sent(n["id"] for n in fresh)
        await self._send({"type": "backlog", "notifications": fresh, "unread": unread})

    def _backlog(self, last_id: int) -> tuple[list[dict], int]:
        """What came after ``last_id``, newest first, at most REALTIME_BACKLOG.

        Ids are taken at insert, rows become visible at commit, so a row with
        a smaller id can commit after ``last_id`` did (two workers at once on
        PostgreSQL). No handler transaction outlives the task time limit, so
        rows created that long before ``last_id`` are sent again too; the
        client drops the ids it already shows.
        """
        from django.db.models import Q

        from .models import Notification

        mine = Notification.objects.filter(user_id=self.user_id)
        anchor = mine.filter(pk=last_id).values_list("created_at", flat=True).first() if last_id else None
        since = Q(pk__gt=last_id)
        if anchor is not None:
            since |= Q(created_at__gte=anchor - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT))
        rows = list(mine.filter(since).order_by("-pk")[: settings.REALTIME_BACKLOG])
        unread = mine.filter(read=False).count()
        return [realtime.payload(n) for n in rows], unread

    async def _read(self, message: dict) -> None:
        ids = message.get("ids")
        everything = message.get("all") is True
        if not everything and not (isinstance(ids, list) and 0 < len(ids) <= MAX_READ_IDS
                                   and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)):
            await self._send({"type": "error", "error": f"read needs all: true or 1..{MAX_READ_IDS} ids"})
            return
        changed, unread = await database_sync_to_async(self._mark_read)(None if everything else ids)
        update = {"type": "notifications.read", "unread": unread}
        update.update({"all": True} if everything else {"ids": changed})
        # Every tab of this user (this one included) learns it from the group.
        await self.channel_layer.group_send(self.group, update)

    def _mark_read(self, ids: list[int] | None) -> tuple[list[int], int]:
        from .models import Notification

        mine = Notification.objects.filter(user_id=self.user_id)  # never another user's rows
        target = mine.filter(read=False) if ids is None else mine.filter(pk__in=ids)
        changed = list(target.values_list("pk", flat=True))
        target.update(read=True)
        return changed, mine.filter(read=False).count()

    async def _recheck(self) -> None:
        """Every REALTIME_SESSION_CHECK_INTERVAL: close if the session ended,
        re-join the group (a restarted Redis forgot it) and send whatever the
        fast path dropped since the resume."""
        interval = settings.REALTIME_SESSION_CHECK_INTERVAL
        while True:
            await asyncio.sleep(interval)
            try:
                if not await database_sync_to_async(self._session_valid)():
                    await self._close(CLOSE_UNAUTHENTICATED, "session ended")
                    return
                await self.channel_layer.group_add(self.group, self.channel_name)
                if self.floor is not None:
                    notifications, _ = await database_sync_to_async(self._backlog)(self.floor)
                    for n in reversed(notifications):
                        if n["id"] not in self.sent:
                            self._mark_sent([n["id"]])
                            await self._send(live_message(n))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("notification socket re-check failed: %s", type(exc).__name__)

    def _session_valid(self) -> bool:
        """The session still exists, still names this user, and the user's
        password (its auth hash) has not changed since."""
        from importlib import import_module

        from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
        from django.utils.crypto import constant_time_compare

        if not self.session_key:
            return False
        data = import_module(settings.SESSION_ENGINE).SessionStore(self.session_key).load()
        if str(data.get(SESSION_KEY)) != str(self.user_id):
            return False
        user = get_user_model().objects.filter(pk=self.user_id, is_active=True).first()
        if user is None:
            return False
        return constant_time_compare(data.get(HASH_SESSION_KEY) or "", user.get_session_auth_hash())

    # --- helpers ----------------------------------------------------------------

    def _mark_sent(self, ids) -> None:
        self.sent.update(ids)
        if len(self.sent) > MAX_SENT_IDS:
            keep = sorted(self.sent)[-MAX_SENT_IDS // 2:]
            self.sent = set(keep)
            self.floor = max(self.floor or 0, keep[0] - 1)

    async def _send(self, message: dict) -> None:
        if not self.closing:
            await self.send(text_data=json.dumps(message, separators=(",", ":")))

    async def _close(self, code: int, reason: str) -> None:
        self.closing = True
        await self.close(code=code, reason=reason)
