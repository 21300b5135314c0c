"""Management commands run as a person would: `manage.py ...`, exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.models import OutboxEvent

from ..support import REPO

pytestmark = pytest.mark.db

DATA = '{"user_id": 1, "title": "t", "message": "m"}'


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "backend/manage.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})


def test_publish_event_prints_the_id_and_exits_0_when_published(redis_client, clean_db):
    done = manage("publish_event", "notifications", "notification.created", DATA)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.strip()
    assert redis_client.xlen("eclean:journal:notifications") == 1
    assert not OutboxEvent.objects.filter(pk=event_id).exists()


def test_publish_event_exits_non_zero_when_redis_does_not_take_it(clean_db):
    done = manage("publish_event", "notifications", "notification.created", DATA,
                  REDIS_URL="redis://:pw@127.0.0.1:1/0", EVENTS_PUBLISH_TIMEOUT="1")
    assert done.returncode != 0
    assert "NOT published" in done.stderr and "kept in the outbox" in done.stderr
    assert OutboxEvent.objects.count() == 1  # nothing lost: the relay has it


def test_publish_event_refuses_a_bad_event_with_exit_1(clean_db):
    done = manage("publish_event", "notifications", "notification.created", '{"user_id": "x"}')
    assert done.returncode == 1 and "bad_data" in done.stderr
    assert not OutboxEvent.objects.exists()
