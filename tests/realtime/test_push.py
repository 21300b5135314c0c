"""Pushing from sync worker code: one connection per process, never a failed event."""

from __future__ import annotations

import logging
import uuid

import pytest
from asgiref.sync import async_to_sync

from core import realtime
from core.models import Notification, ProcessedEvent
from devtools.redis_server import free_port
from e_clean_backend import redis_config
from tests.workers.handlers.helpers import event, handle

pytestmark = [pytest.mark.db]


def connections_made(client) -> int:
    return client.info("stats")["total_connections_received"]


def rows(user, count: int) -> list[Notification]:
    return [Notification.objects.create(user=user, kind="k", title=f"t{i}", message="m", event_id=uuid.uuid4())
            for i in range(count)]


def test_pushes_reuse_one_connection_where_async_to_sync_opens_one_each(redis_client, users):
    notifications = rows(users["client"], 51)
    pusher = realtime.Pusher()
    pusher.push(notifications[:1])
    pusher.flush()
    pusher.push(notifications[:1])
    pusher.flush()
    before = connections_made(redis_client)
    for n in notifications[1:]:
        pusher.push([n])
    pusher.flush()
    ours = connections_made(redis_client) - before
    assert (pusher.sent, pusher.failed) == (52, 0)
    assert ours <= 1, f"{ours} new Redis connections for 50 pushes"

    # What the issue warns about, measured: async_to_sync runs each call on a
    # new event loop, and channels_redis keeps its pool per loop.
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    before = connections_made(redis_client)
    for n in notifications[1:21]:
        async_to_sync(layer.group_send)(realtime.group_name(n.user_id), {"type": "notification.push",
                                                                        "notification": realtime.payload(n)})
    naive = connections_made(redis_client) - before
    print(f"Redis connections opened: {ours} for 50 pushes through the pusher, {naive} for 20 async_to_sync sends")
    assert naive >= 20, f"async_to_sync opened {naive} connections for 20 sends"


def test_a_failing_push_is_logged_counted_and_the_event_still_handled(users, temp_settings, monkeypatch, caplog):
    secret = "s3cr:t@/#%"
    temp_settings.CHANNEL_LAYERS = redis_config.channel_layers(
        {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(free_port()), "REDIS_PASSWORD": secret})
    pusher = realtime.Pusher()
    monkeypatch.setattr(realtime, "pusher", pusher)
    ev = event("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m"})
    with caplog.at_level(logging.WARNING, logger="core.realtime"):
        assert handle(ev) is True  # handled: no retry, no dead letter
        pusher.flush(timeout=10)
    assert ProcessedEvent.objects.filter(event_id=ev.id).exists()
    assert Notification.objects.filter(event_id=ev.id).count() == 1
    assert (pusher.sent, pusher.failed) == (0, 1)
    assert "realtime push failed" in caplog.text and "1 failed so far" in caplog.text
    assert secret not in caplog.text and redis_config.redis_url({"REDIS_PASSWORD": secret}) not in caplog.text


def test_a_handler_pushes_to_the_notified_users_after_commit(redis_client, users, job, monkeypatch):
    """The hook in workers/handlers/base.py: every handler that notifies pushes."""
    sent = []
    monkeypatch.setattr(realtime, "push", lambda ns: sent.append([(n.user_id, n.pk) for n in ns]))
    job.cleaner = users["cleaner"]
    job.status = "accepted"
    job.save()
    ev = event("job.completed", {"job_id": job.pk})
    assert handle(ev) is True
    expected = sorted(Notification.objects.filter(event_id=ev.id).values_list("user_id", "pk"))
    assert len(expected) == 2 and sorted(sent[0]) == expected
