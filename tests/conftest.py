"""Suite-wide set-up: a private password-protected Redis and a fresh database.

Both start before Django is configured, because settings read REDIS_URL and
DATABASE_URL at import. TEST_DB=postgres runs the database on the machine's
PostgreSQL (a new database per run, dropped at the end); the default is an
SQLite file in WAL mode, as `make run` uses.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import uuid
from pathlib import Path

import pytest

from devtools.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
_state: dict = {}

# Variables from the developer's shell that would point the suite elsewhere.
_FOREIGN = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_USERNAME", "REDIS_PASSWORD",
            "REDIS_PASSWORD_FILE", "REDIS_SSL", "CELERY_BROKER_URL", "DATABASE_URL")


def _postgres_database() -> str:
    import psycopg

    admin_url = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    name = f"eclean_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _state["pg"] = (admin_url, name)
    return admin_url.rsplit("/", 1)[0] + "/" + name


def pytest_configure(config):
    for name in _FOREIGN:
        os.environ.pop(name, None)
    workdir = tempfile.mkdtemp(prefix="eclean-tests-")
    _state["workdir"] = workdir
    server = RedisServer(password=f"p@ss:w/rd#%[]{secrets.token_hex(8)}").start()
    _state["redis"] = server
    db = os.environ.get("TEST_DB", "sqlite")
    if db == "postgres":
        database_url = _postgres_database()
    elif db == "sqlite":
        database_url = f"sqlite:///{workdir}/db.sqlite3"
    else:
        raise pytest.UsageError(f"TEST_DB must be sqlite or postgres, not {db!r}")
    os.environ.update(
        REDIS_URL=server.url,
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="e_clean_backend.settings",
        # Never the developer's `make run` settings (.run/env): only these.
        ECLEAN_ENV_FILE="off",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1,testserver",  # testserver: Django's test client
        # Retries in milliseconds, a killed worker's task back in seconds.
        EVENTS_RETRY_BACKOFF_SCALE="0.01",
        CELERY_TASK_TIME_LIMIT="8",
        CELERY_VISIBILITY_TIMEOUT="10",
        EVENTS_AUDIT_DELAY="15",
        EVENTS_MAX_DELIVERIES="3",
        EVENTS_AUDIT_INTERVAL="2",
        CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT="3",
        BRIDGE_HEARTBEAT_TTL="5",
        EVENTS_CLAIM_PENDING_TTL="5",
    )
    # pytest.ini's pythonpath serves this process; the processes the tests
    # start (workers, the bridge, manage.py) are told where the code is here,
    # with or without the venv's eclean.pth (the Makefile writes it).
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "backend")])
    from e_clean_backend.bootstrap import setup

    setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def pytest_unconfigure(config):
    server = _state.pop("redis", None)
    if server:
        server.cleanup()
    pg = _state.pop("pg", None)
    if pg:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(pg[0], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg[1]}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    return _state["redis"]


@pytest.fixture
def redis_client(redis_server):
    import redis

    client = redis.Redis.from_url(redis_server.url)
    # Empty, except kombu's queue bindings: the in-process worker of
    # tests/workers/test_tasks.py keeps running and relies on them.
    stale = [k for k in client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    for start in range(0, len(stale), 1000):
        client.delete(*stale[start:start + 1000])
    yield client
    client.close()


@pytest.fixture
def clean_db():
    """A database emptied after the test (rows are seen by worker subprocesses,
    so no test transaction can hide them)."""
    yield
    from django.contrib.auth import get_user_model
    from django.db import connection

    from core.models import DeadLetter, Job, Notification, OutboxEvent, Payment, ProcessedEvent

    for model in (Notification, Payment, Job, ProcessedEvent, DeadLetter, OutboxEvent, get_user_model()):
        model.objects.all().delete()
    connection.close()


@pytest.fixture
def users(clean_db):
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return {
        "client": User.objects.create(username="client"),
        "cleaner": User.objects.create(username="cleaner"),
    }


@pytest.fixture
def job(users):
    from core.models import Job

    return Job.objects.create(client=users["client"], title="Flat, 2 rooms")


@pytest.fixture
def temp_settings(monkeypatch):
    """Django settings whose changes are undone after the test."""
    from django.conf import settings as django_settings

    class Settings:
        def __getattr__(self, name):
            return getattr(django_settings, name)

        def __setattr__(self, name, value):
            monkeypatch.setattr(django_settings, name, value)

    return Settings()
