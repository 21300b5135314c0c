"""/notifications/ and /login/ over HTTP (the live part is test_browser.py)."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.test import Client

from core.models import Notification

pytestmark = [pytest.mark.db]


def test_the_page_lists_only_the_users_own_notifications_newest_first(make_user):
    alice, bob = make_user("alice", "pw-alice-123"), make_user("bob")
    for title in ("first", "second"):
        Notification.objects.create(user=alice, kind="k", title=title, message="m", event_id=uuid.uuid4())
    Notification.objects.create(user=bob, kind="k", title="bob's secret", message="m", event_id=uuid.uuid4())
    Notification.objects.filter(title="first").update(read=True)
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": "pw-alice-123"}).status_code == 302
    page = client.get("/notifications/")
    assert page.status_code == 200
    html = page.content.decode()
    initial = json.loads(re.search(r'id="initial-notifications" type="application/json">(.*?)</script>', html).group(1))
    assert [n["title"] for n in initial] == ["second", "first"]
    assert "bob's secret" not in html
    assert re.search(r'id="unread"[^>]*>1<', html)
    assert "/static/core/notifications.js" in html


def test_anonymous_visitors_are_sent_to_sign_in(clean_db):
    page = Client().get("/notifications/")
    assert page.status_code == 302 and page["Location"] == "/login/?next=/notifications/"
    login = Client().get("/login/?next=/notifications/")
    assert login.status_code == 200 and b'name="password"' in login.content
