"""The web process as it runs in `make run` and compose (the Procfile's Daphne
line): credentials, static files in production mode, the socket end to end."""

from __future__ import annotations

import asyncio
import json
import pytest
import requests
import websockets

from core.models import Notification
from e_clean_backend import redis_config

from .conftest import session_cookie

pytestmark = [pytest.mark.db, pytest.mark.slow]

WRONG = "wr0ng-S3cret:@/#%"


def parts_env(redis_server, **parts) -> dict:
    return {"REDIS_URL": "", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port), **parts}


@pytest.mark.parametrize("parts", [{"REDIS_PASSWORD": WRONG}, {}], ids=["wrong-password", "no-password"])
def test_refused_credentials_stop_the_web_process_with_one_line(web_factory, redis_server, parts):
    web = web_factory(parts_env(redis_server, **parts), ready=False)
    code = web.wait(timeout=60)
    out = web.log()
    assert code == 3
    assert out.count("refused the connection credentials") == 1 and "REDIS_PASSWORD" in out
    assert WRONG not in out and redis_server.password not in out
    assert "Traceback" not in out


def test_bad_configuration_is_one_line_and_exit_2(web_factory):
    web = web_factory({"REDIS_URL": "", "REDIS_PORT": "abc"}, ready=False)
    assert web.wait(timeout=60) == 2
    assert "web: configuration error: REDIS_PORT must be a whole number" in web.log()
    assert "Traceback" not in web.log()


async def first_message(url: str, cookie: str, origin: str, send: dict | None = None) -> dict:
    async with websockets.connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"},
                                  open_timeout=10) as ws:
        if send:
            await ws.send(json.dumps(send))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_acl_user_with_special_password_serves_the_socket(web_factory, redis_client, redis_server, make_user):
    """The seed's CHANNEL_LAYERS bug: the layer must reach Redis with the same
    quoted credentials as everything else, whatever the characters."""
    password = "Ac1:@/#%[] ?&="
    redis_client.acl_setuser("events", enabled=True, passwords=[f"+{password}"], commands=["+@all"],
                             keys=["*"], channels=["*"])
    try:
        web = web_factory(parts_env(redis_server, REDIS_USERNAME="events", REDIS_PASSWORD=password))
        alice = make_user("alice")
        n = Notification.objects.create(user=alice, kind="k", title="via ACL user", message="m",
                                        event_id="6c1f0d7e-5b1a-4e43-9f53-2a4f0f3d9b11")
        got = asyncio.run(first_message(web.ws, session_cookie(alice), web.http, {"type": "resume", "last_id": 0}))
        assert got["type"] == "backlog" and got["notifications"][0]["id"] == n.id
        assert any(c["user"] == "events" for c in redis_client.client_list())
    finally:
        redis_client.acl_deluser("events")
    assert password not in web.log()


def test_foreign_origin_and_anonymous_handshakes_are_refused(web_factory, make_user):
    web = web_factory()
    cookie = session_cookie(make_user("alice"))
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(first_message(web.ws, cookie, "https://evil.example"))
    assert refused.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(first_message(web.ws, "not-a-session", web.http))
    assert refused.value.response.status_code == 403


def test_inbound_frames_over_the_server_limit_are_refused(web_factory, make_user):
    """Daphne's own bound (--websocket-max-message-size) before any app code."""
    web = web_factory()
    cookie = session_cookie(make_user("alice"))

    async def go():
        async with websockets.connect(web.ws, origin=web.http, additional_headers={"Cookie": f"sessionid={cookie}"},
                                      max_size=None) as ws:
            await ws.send("x" * 200_000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd

    # Dropped by Daphne (Autobahn fails the connection), not closed by the
    # consumer's own, smaller limit (code 1009, reason "message too big").
    rcvd = asyncio.run(go())
    assert rcvd is None or rcvd.reason != "message too big"


def test_static_files_are_served_in_production_mode(web_factory, static_root):
    """DEBUG off, as in compose: the admin's CSS comes from the web process
    (collected by `collectstatic`, as the Dockerfile does, served by WhiteNoise)."""
    assert (static_root / "admin" / "css" / "base.css").exists()
    web = web_factory({"DJANGO_STATIC_ROOT": str(static_root), "DJANGO_DEBUG": "0"})
    css = requests.get(f"{web.http}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "body" in css.text
    page_js = requests.get(f"{web.http}/static/core/notifications.js", timeout=10, headers={"Accept-Encoding": "gzip"})
    assert page_js.status_code == 200 and page_js.headers.get("Content-Encoding") == "gzip"
    assert requests.get(f"{web.http}/static/admin/css/nope.css", timeout=10).status_code == 404
    # and the notifications page needs a login
    page = requests.get(f"{web.http}/notifications/", timeout=10, allow_redirects=False)
    assert page.status_code == 302 and page.headers["Location"].startswith("/login/")
