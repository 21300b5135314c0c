"""Live: the Procfile's Daphne, the bridge and a Celery worker as real processes,
a real password-protected redis-server, and the ``websockets`` client library.

publish_event → Redis → bridge → broker → worker (commit, then push) → channel
layer → Daphne → socket. Then Redis and the web process restart mid-stream and
every notification still reaches the client exactly once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
import redis
import websockets
from django.db import transaction

from core import events
from core.models import Notification
from devtools.redis_server import RedisServer
from tests import support
from workers import journal

from .conftest import session_cookie

pytestmark = [pytest.mark.db, pytest.mark.slow]

# A short session re-check: it is also when a socket re-joins its group and
# fetches what the fast path dropped (a restarted Redis forgets groups).
WEB_ENV = {"REALTIME_SESSION_CHECK_INTERVAL": "2"}


class Browserish(threading.Thread):
    """What the page's script does, in Python: connect, resume from the last id
    it shows, drop ids it already shows, reconnect with backoff."""

    def __init__(self, url: str, origin: str, cookie: str):
        super().__init__(daemon=True)
        self.url, self.origin, self.cookie = url, origin, cookie
        self.shown: dict[int, dict] = {}
        self.per_connection: list[list[int]] = []
        self.received_at: dict[str, float] = {}  # event_id -> monotonic time
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        delay = 0.2
        while not self.stopping.is_set():
            try:
                async with websockets.connect(self.url, origin=self.origin, open_timeout=5,
                                              additional_headers={"Cookie": f"sessionid={self.cookie}"}) as ws:
                    delay = 0.2
                    got: list[int] = []
                    self.per_connection.append(got)
                    await ws.send(json.dumps({"type": "resume", "last_id": max(self.shown, default=0)}))
                    while not self.stopping.is_set():
                        try:
                            message = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                        except asyncio.TimeoutError:
                            continue
                        batch = (message["notifications"] if message["type"] == "backlog"
                                 else [message["notification"]] if message["type"] == "notification" else [])
                        now = time.monotonic()
                        with self.lock:
                            for n in batch:
                                got.append(n["id"])
                                if n["id"] not in self.shown:
                                    self.shown[n["id"]] = n
                                    self.received_at[n["event_id"]] = now
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def event_ids(self) -> set[str]:
        with self.lock:
            return {n["event_id"] for n in self.shown.values()}

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@pytest.fixture
def browserish():
    started = []

    def start(web, cookie):
        client = Browserish(web.ws, web.http, cookie)
        client.start()
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


def test_publish_event_reaches_the_socket_after_the_worker_commits(tmp_path, redis_client, web_factory, make_user,
                                                                     browserish):
    # The default 30 s re-check, and a wait well under it: only the push after
    # commit can deliver in time, not the periodic catch-up from the database.
    web = web_factory({"REALTIME_SESSION_CHECK_INTERVAL": "30"})
    bridge, worker = support.bridge(tmp_path), support.worker(tmp_path)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY, timeout=60)
        alice, bob = make_user("alice"), make_user("bob")
        a, b = browserish(web, session_cookie(alice)), browserish(web, session_cookie(bob))
        support.wait_for(lambda: a.per_connection and b.per_connection, what="both sockets open")
        with transaction.atomic():
            event_id = events.publish_event("notifications", "notification.created",
                                            {"user_id": alice.pk, "title": "Live", "message": "from publish_event"})
        support.wait_for(lambda: event_id in a.event_ids(), timeout=15, what="the notification on Alice's socket")
        shown = next(iter(a.shown.values()))
        row = Notification.objects.get(event_id=event_id)
        assert shown == {"id": row.pk, "kind": "general", "title": "Live", "message": "from publish_event",
                         "created_at": row.created_at.isoformat(), "event_id": event_id, "read": False}
        time.sleep(1)
        assert b.shown == {}, "Bob never sees Alice's notification"
    finally:
        bridge.stop()
        worker.stop()


def _publish(client: redis.Redis, user_id: int, title: str) -> str:
    """The publisher's path (envelope, journal, PUBLISH), retried while Redis
    restarts, as the outbox relay would."""
    event_id = str(uuid.uuid4())
    payload = events.build_event("notifications", "notification.created",
                                 {"user_id": user_id, "title": title, "message": "m"}, event_id)
    for _ in range(400):
        try:
            journal.publish(client, "notifications", payload, 100_000)
            return event_id
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("could not publish for 20 s")


@pytest.mark.timeout(400)
def test_redis_then_web_restart_mid_stream_every_notification_once(tmp_path, web_factory, make_user, browserish):
    server = RedisServer(appendonly=True).start()
    env = {"REDIS_URL": server.url}
    client = redis.Redis.from_url(server.url)
    web = web_factory({**env, **WEB_ENV})
    webs = [web]
    bridge = support.bridge(tmp_path, env=env)
    worker = support.worker(tmp_path, env=env)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY, timeout=60)
        alice = make_user("alice")
        socket = browserish(web, session_cookie(alice))
        support.wait_for(lambda: socket.per_connection, what="the socket open")
        ids = []
        for i in range(90):
            ids.append(_publish(client, alice.pk, f"n{i}"))
            time.sleep(0.05)
            if i == 30:
                server.restart()
            if i == 60:
                web.stop()
                web = web_factory({**env, **WEB_ENV}, port=web.port)
                webs.append(web)
        support.wait_for(lambda: socket.event_ids() >= set(ids), timeout=120, interval=0.2,
                         what=f"all {len(ids)} notifications on the socket "
                              f"(have {len(socket.event_ids() & set(ids))})")
        time.sleep(3)  # a late duplicate would arrive now
        assert Notification.objects.filter(user=alice).count() == len(ids)
        assert socket.event_ids() == set(ids), "nothing but the published ones"
        assert len(socket.per_connection) >= 2, "the web restart made it reconnect"
        for got in socket.per_connection:
            assert len(got) == len(set(got)), "one connection never sends an id twice"
    finally:
        bridge.stop()
        worker.stop()
        web.stop()
        client.close()
        server.cleanup()
    web_logs = "".join(w.log() for w in webs)
    assert server.password not in web_logs + worker.log() + bridge.log()
    assert "lost Redis" in webs[0].log(), "the web process noticed the restart"
    assert "Traceback" not in web_logs, "losing Redis is one line, not a traceback"
