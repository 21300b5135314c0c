"""The notifications socket over the full middleware stack (origin check,
session auth, routing) with the real Redis channel layer on the suite's
password-protected redis-server: ``channels.testing.WebsocketCommunicator``."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from channels.testing import WebsocketCommunicator
from django.db import transaction

from core import realtime
from core.models import Notification

from .conftest import session_cookie

pytestmark = [pytest.mark.db]

SAME_ORIGIN = b"http://localhost"
PATH = "/ws/notifications/"


@pytest.fixture(autouse=True)
def fresh_layer(redis_client):
    """A channel layer per test: each test runs its own event loop, and a
    layer's connections belong to the loop that opened them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def application():
    from e_clean_backend.asgi import application

    return application


def communicator(cookie: str | None, origin: bytes | None = SAME_ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application(), PATH, headers=headers)


def notify(user, title="Hello", message="World", kind="general") -> Notification:
    """Commit a notification and push it the way handlers do."""
    with transaction.atomic():
        n = Notification.objects.create(user=user, kind=kind, title=title, message=message, event_id=uuid.uuid4())
        transaction.on_commit(lambda: realtime.push([n]))
    return n


async def receive(comm, timeout=5.0) -> dict:
    return json.loads(await comm.receive_from(timeout))


async def connected(cookie, origin=SAME_ORIGIN):
    comm = communicator(cookie, origin)
    ok, _ = await comm.connect(timeout=5)
    assert ok
    return comm


@pytest.mark.parametrize("origin", [SAME_ORIGIN, b"https://evil.example", None], ids=["same-origin", "foreign", "no-origin"])
@pytest.mark.parametrize("cookie", ["valid", "none", "bogus", "logged-out"])
def test_handshake_needs_a_session_and_our_origin(make_user, cookie, origin):
    user = make_user("alice")
    value = {"valid": session_cookie(user), "none": None, "bogus": "x" * 32}.get(cookie)
    if cookie == "logged-out":
        from django.contrib.sessions.models import Session

        value = session_cookie(user)
        Session.objects.filter(session_key=value).delete()

    async def go():
        comm = communicator(value, origin)
        ok, code = await comm.connect(timeout=5)
        await comm.disconnect()
        return ok

    assert asyncio.run(go()) is (cookie == "valid" and origin == SAME_ORIGIN)


def test_a_user_receives_only_their_own_notifications(make_user):
    alice, bob = make_user("alice"), make_user("bob")

    ca, cb = session_cookie(alice), session_cookie(bob)

    async def go():
        a, b = await connected(ca), await connected(cb)
        for comm in (a, b):
            await comm.send_json_to({"type": "resume", "last_id": 0})
            assert (await receive(comm))["type"] == "backlog"
        n = await asyncio.to_thread(notify, alice, "For Alice")
        got = await receive(a)
        assert got == {"type": "notification", **realtime.payload(n), "notification": realtime.payload(n)}
        assert {k: got[k] for k in ("id", "kind", "title", "message", "event_id")} == {
            "id": n.pk, "kind": n.kind, "title": "For Alice", "message": n.message, "event_id": str(n.event_id)}
        assert got["created_at"]
        assert set(got["notification"]) == {"id", "kind", "title", "message", "created_at", "event_id", "read"}
        assert await b.receive_nothing(timeout=1.0)
        # and Bob's resume never lists Alice's rows
        await b.send_json_to({"type": "resume", "last_id": 0})
        assert (await receive(b))["notifications"] == []
        # nor can Bob mark Alice's notification read
        await b.send_json_to({"type": "read", "ids": [n.id]})
        assert (await receive(b))["ids"] == []
        await a.disconnect()
        await b.disconnect()

    asyncio.run(go())
    assert Notification.objects.get(user=alice).read is False


def test_a_rolled_back_notification_is_never_pushed(make_user):
    from workers.envelope import parse
    from workers.handlers.base import notify as handler_notify

    alice = make_user("alice")
    event = parse("notifications", json.dumps({"id": str(uuid.uuid4()), "type": "notification.created",
                                               "data": {"user_id": alice.pk, "title": "t", "message": "m"}}).encode())

    cookie = session_cookie(alice)

    async def go():
        comm = await connected(cookie)

        def rolled_back():
            with pytest.raises(RuntimeError), transaction.atomic():
                handler_notify(event, [alice], "Rolled back", "never shown")
                raise RuntimeError("the handler failed after notifying")

        await asyncio.to_thread(rolled_back)
        assert await comm.receive_nothing(timeout=1.0)
        await asyncio.to_thread(lambda: transaction.atomic()(handler_notify)(event, [alice], "Committed", "shown"))
        got = await receive(comm)
        assert got["notification"]["title"] == "Committed"
        assert got["notification"]["event_id"] == str(event.id)
        await comm.disconnect()

    asyncio.run(go())
    assert list(Notification.objects.values_list("title", flat=True)) == ["Committed"]


def test_resume_sends_what_came_after_bounded_then_live(make_user, temp_settings):
    temp_settings.REALTIME_BACKLOG = 5
    alice = make_user("alice")
    rows = [notify(alice, f"n{i}") for i in range(8)]

    cookie = session_cookie(alice)

    async def go():
        comm = await connected(cookie)
        await comm.send_json_to({"type": "resume", "last_id": rows[1].id})
        backlog = await receive(comm)
        ids = [n["id"] for n in backlog["notifications"]]
        # newest first, the latest REALTIME_BACKLOG only
        assert ids == sorted(ids, reverse=True) and len(ids) == 5 and ids[0] == rows[-1].id
        assert backlog["unread"] == 8
        # then live, and never an id this socket already sent
        live = await asyncio.to_thread(notify, alice, "live")
        assert (await receive(comm))["notification"]["id"] == live.id
        await asyncio.to_thread(realtime.push, [live])  # the same row pushed twice
        assert await comm.receive_nothing(timeout=1.0)
        await comm.disconnect()

        # A reconnect with everything shown gets nothing new but what overlaps
        # (rows created within the task time limit before last_id, in case one
        # committed later than a larger id: the client drops those it shows).
        again = await connected(cookie)
        await again.send_json_to({"type": "resume", "last_id": live.id})
        backlog = await receive(again)
        assert all(n["id"] <= live.id for n in backlog["notifications"])
        await again.disconnect()

    asyncio.run(go())


def test_resume_finds_a_smaller_id_committed_after_the_last_one(make_user):
    """Ids are taken at insert, rows appear at commit: a row with a smaller id
    that committed after the client's last one must still reach it."""
    alice = make_user("alice")
    late = Notification.objects.create(user=alice, kind="k", title="late", message="m", event_id=uuid.uuid4())
    last = notify(alice, "last")
    Notification.objects.filter(pk=late.pk).update(title="late, committed after")

    cookie = session_cookie(alice)

    async def go():
        comm = await connected(cookie)
        await comm.send_json_to({"type": "resume", "last_id": last.id})
        backlog = await receive(comm)
        assert late.id in [n["id"] for n in backlog["notifications"]]
        await comm.disconnect()

    asyncio.run(go())


def test_mark_read_reaches_every_tab_of_the_user(make_user):
    alice, bob = make_user("alice"), make_user("bob")
    a1, a2 = notify(alice, "one"), notify(alice, "two")
    notify(bob, "bob's")

    cookies = session_cookie(alice), session_cookie(alice), session_cookie(bob)

    async def go():
        tab1, tab2, other = [await connected(c) for c in cookies]
        await tab1.send_json_to({"type": "read", "ids": [a1.id]})
        for tab in (tab1, tab2):
            assert await receive(tab) == {"type": "read", "unread": 1, "ids": [a1.id]}
        await tab2.send_json_to({"type": "read", "all": True})
        for tab in (tab1, tab2):
            assert await receive(tab) == {"type": "read", "unread": 0, "all": True}
        assert await other.receive_nothing(timeout=0.5)
        for comm in (tab1, tab2, other):
            await comm.disconnect()

    asyncio.run(go())
    assert set(Notification.objects.filter(read=True).values_list("pk", flat=True)) == {a1.id, a2.id}


def test_too_many_messages_close_the_socket(make_user, temp_settings):
    # A rate so low that no token comes back while the test runs, however slow the machine.
    temp_settings.REALTIME_RATE = 0.001
    temp_settings.REALTIME_BURST = 5
    cookie = session_cookie(make_user("alice"))

    async def go():
        comm = await connected(cookie)
        for _ in range(5):
            await comm.send_json_to({"type": "ping"})
            assert (await receive(comm))["type"] == "pong"
        await comm.send_json_to({"type": "ping"})
        closed = await comm.receive_output(timeout=5)
        assert closed["type"] == "websocket.close" and closed["code"] == 4429
        await comm.wait()

    asyncio.run(go())


def test_a_message_over_the_size_limit_closes_the_socket(make_user, temp_settings):
    temp_settings.REALTIME_MAX_MESSAGE_BYTES = 1024
    cookie = session_cookie(make_user("alice"))

    async def go():
        comm = await connected(cookie)
        await comm.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 1000}))
        closed = await comm.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 1009, "reason": "message too big"}
        await comm.wait()

    asyncio.run(go())


def test_bad_messages_get_an_error_and_the_socket_stays(make_user):
    cookie = session_cookie(make_user("alice"))

    async def go():
        comm = await connected(cookie)
        for bad in ("not json", "[1]", '{"type": "nope"}', '{"type": "resume", "last_id": -1}',
                    '{"type": "resume", "last_id": false}', '{"type": "resume", "last_id": ""}',
                    '{"type": "read", "ids": ["1"]}'):
            await comm.send_to(text_data=bad)
            assert (await receive(comm))["type"] == "error"
        await comm.send_json_to({"type": "ping"})
        assert (await receive(comm))["type"] == "pong"
        await comm.disconnect()

    asyncio.run(go())


@pytest.mark.parametrize("how", ["logout", "password-change"])
def test_a_socket_whose_session_ended_is_closed(make_user, temp_settings, how):
    temp_settings.REALTIME_SESSION_CHECK_INTERVAL = 0.5
    alice = make_user("alice")
    cookie = session_cookie(alice)

    async def go():
        comm = await connected(cookie)

        def end_session():
            if how == "logout":
                from django.contrib.sessions.backends.db import SessionStore

                SessionStore(cookie).flush()  # what logout() does to the session
            else:
                alice.set_password("a-new-password-123")
                alice.save()

        await asyncio.to_thread(end_session)
        closed = await comm.receive_output(timeout=10)
        assert closed == {"type": "websocket.close", "code": 4401, "reason": "session ended"}
        await comm.wait()

    asyncio.run(go())


def test_the_session_check_interval_is_at_most_60_seconds():
    from django.conf import settings

    assert 0 < settings.REALTIME_SESSION_CHECK_INTERVAL <= 60
