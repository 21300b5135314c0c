"""Django settings for the E-Clean backend and, through ``namespace='CELERY'``,
for the Celery workers and the bridge.

Every value comes from the environment with a safe local default, except
secrets, which have no default at all. README "Operations" lists them all.
The environment may be completed by the env file `make run` writes (see
``ENV_FILE`` below): the real environment always wins over it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url

from workers.topics import TOPICS

from . import redis_config
from .env import ImproperlyConfigured, env_bool, env_float, env_int, env_secret, env_str, load_env_file
from .logging import logging_config

# First of all: the env file of a running `make run` (.run/env), when there is
# one, so a second terminal talks to that pipeline with no exports. Variables
# already in the environment win over the file; ECLEAN_ENV_FILE=off (the test
# suite sets it) skips it. Everything below reads the merged environment.
ENV_FILE = load_env_file()

BASE_DIR = Path(__file__).resolve().parent.parent  # backend/
REPO_DIR = BASE_DIR.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is not set; "
            "`make run` generates one, or set DJANGO_DEBUG=1 for a throwaway key"
        )
    # Debug only: a key per process, so nothing signed outlives a restart.
    SECRET_KEY = secrets.token_urlsafe(50)

ALLOWED_HOSTS = [h for h in env_str("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]

INSTALLED_APPS = [
    # First, so `manage.py runserver` is Daphne's (HTTP and WebSocket), as in production.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself (the admin is styled under
    # compose with DEBUG off); right after SecurityMiddleware, as documented.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "e_clean_backend.urls"
# A CSRF failure under /api/ answers JSON like every other API error.
CSRF_FAILURE_VIEW = "core.api.csrf_failure"
# Django's debug page hides settings named like secrets; ours carry the Redis
# password inside URLs (REDIS_URL, CELERY_BROKER_URL), so hide *_URL too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "e_clean_backend.reporting.HideUrlsFilter"
WSGI_APPLICATION = "e_clean_backend.wsgi.application"
# The web process is an ASGI server (Daphne): HTTP through Django, and the
# notifications WebSocket (backend/e_clean_backend/asgi.py).
ASGI_APPLICATION = "e_clean_backend.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# SQLite for local runs, PostgreSQL in compose (DATABASE_URL).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Workers hold a connection per process; reuse it between tasks.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; the busy
        # timeout makes writers queue instead of failing "database is locked";
        # IMMEDIATE takes the write lock at BEGIN so two writers never
        # deadlock upgrading a read lock.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# `collectstatic` writes here (the Dockerfile runs it); WhiteNoise serves it.
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip) next to the originals, no manifest: a template's
    # {% static %} works before collectstatic ran (tests, `make run`).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Debug runs serve straight from the apps' static/ folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
# Clients and cleaners sign in here (the admin's login is for staff only).
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/notifications/"
LOGOUT_REDIRECT_URL = "/login/"

# --- Redis ------------------------------------------------------------------
# One builder for every Redis client (see redis_config): Django, the broker,
# the bridge and the publisher cannot disagree on the password.
REDIS_URL = redis_config.redis_url()
REDIS_OPTIONS = redis_config.connection_options()

# --- Real-time notifications (Django Channels) -------------------------------
# The same URL and options as every other client, its own key prefix.
CHANNEL_LAYERS = redis_config.channel_layers()
# Notifications a (re)connecting socket receives from the database at most.
REALTIME_BACKLOG = env_int("REALTIME_BACKLOG", 100, minimum=1, maximum=1000)
# Seconds between re-checks of a socket's session: a logged-out session's
# socket is closed within this (the issue asks for 60 s at most).
REALTIME_SESSION_CHECK_INTERVAL = env_float("REALTIME_SESSION_CHECK_INTERVAL", 30.0)
if not 0 < REALTIME_SESSION_CHECK_INTERVAL <= 60:
    raise ImproperlyConfigured("REALTIME_SESSION_CHECK_INTERVAL must be between 0 and 60 seconds")
# Inbound frames: the client only sends small commands (resume, read, ping).
REALTIME_MAX_MESSAGE_BYTES = env_int("REALTIME_MAX_MESSAGE_BYTES", 4096, minimum=256)
# Token bucket per socket: a steady rate and a burst of inbound messages.
REALTIME_RATE = env_float("REALTIME_RATE", 5.0)
REALTIME_BURST = env_int("REALTIME_BURST", 20, minimum=1)

# --- Events -----------------------------------------------------------------
EVENTS_MAX_BYTES = env_int("EVENTS_MAX_BYTES", 64 * 1024, minimum=256)
# Journal: a capped stream per topic that lets the bridge recover what it
# missed while disconnected. ~100k entries per topic is minutes of peak load.
EVENTS_JOURNAL_MAXLEN = env_int("EVENTS_JOURNAL_MAXLEN", 100_000, minimum=100)
# A claim must outlive the journal's reach, or a replay after the claim expired
# would enqueue the event again (handlers would still apply it once).
EVENTS_CLAIM_TTL = env_int("EVENTS_CLAIM_TTL", 7 * 24 * 3600, minimum=60)
# How long a claim taken but not yet confirmed as enqueued protects the event.
# A live bridge confirms within one batch (milliseconds); a bridge that died
# holding claims delays those events by this long, after which another bridge
# (or the restarted one) enqueues them. Short, but above a broker hiccup.
EVENTS_CLAIM_PENDING_TTL = env_int("EVENTS_CLAIM_PENDING_TTL", 10, minimum=1)
# Deliveries of one attempt before the event is dead-lettered instead of
# killing the next worker too: the first plus the times the message came back
# unfinished (worker killed, time limit, or requeued at a worker's shutdown;
# the margin lets a prefetched event survive a few restarts in a row).
EVENTS_MAX_DELIVERIES = env_int("EVENTS_MAX_DELIVERIES", 5, minimum=1)
# Scale every retry countdown; tests set it low so backoff takes milliseconds.
EVENTS_RETRY_BACKOFF_SCALE = env_float("EVENTS_RETRY_BACKOFF_SCALE", 1.0)
# The publisher's fast path after commit waits at most this long on Redis
# (connect and reply, one try): a hung Redis must not hold a web request; the
# outbox row stays and the bridge's relay publishes it later.
EVENTS_PUBLISH_TIMEOUT = env_float("EVENTS_PUBLISH_TIMEOUT", 1.0)
# Outbox rows older than this are the relay's: the fast path had its chance.
# Long enough that the relay rarely races a fast path still in flight (a
# double publish is harmless, only wasted), short enough to be "a bit late".
EVENTS_OUTBOX_DELAY = env_float("EVENTS_OUTBOX_DELAY", 5.0)
BRIDGE_NAME = env_str("BRIDGE_NAME", "bridge")
BRIDGE_BATCH_SIZE = env_int("BRIDGE_BATCH_SIZE", 500, minimum=1)
BRIDGE_HEARTBEAT_TTL = env_int("BRIDGE_HEARTBEAT_TTL", 30, minimum=2)
# Prometheus endpoint of the bridge; 0 turns it off.
BRIDGE_METRICS_PORT = env_int("BRIDGE_METRICS_PORT", 0, minimum=0, maximum=65535)
BRIDGE_METRICS_ADDR = env_str("BRIDGE_METRICS_ADDR", "127.0.0.1")

# --- Celery -------------------------------------------------------------------
# One Celery queue per topic, named after it (the list is workers/topics.py).
TOPIC_QUEUES = TOPICS
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# Tasks must finish well before the broker considers them lost; a killed
# worker's unacked message comes back after the visibility timeout.
# No soft time limit on purpose: SoftTimeLimitExceeded is raised at any
# bytecode, also inside Django's transaction bookkeeping, and can leave a pool
# process in a half-open transaction that holds SQLite's write lock. The hard
# limit kills the process instead; the database rolls back cleanly.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60, minimum=1)
# A task killed by the hard limit goes back on the queue like one whose worker
# died; the delivery count (workers/tasks.py) dead-letters it after
# EVENTS_MAX_DELIVERIES, so a hanging handler cannot loop and is not lost.
CELERY_TASK_ACKS_ON_TIMEOUT = False
# Pool processes per worker; 0 is Celery's default, one per core. `make bench`'s
# worker-topology table found no layout faster on 2 cores (one worker -c 2,
# 2-4 workers -c 1 and two solo workers all within 6%), and one worker used the
# least CPU per event; more workers (WORKER_PROCESSES) are for more cores or hosts.
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 0, minimum=0)
# Late acks keep prefetched messages unacked; a small window bounds what a
# dying worker holds while still hiding the broker round trip.
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, minimum=1)
# The visibility timeout runs from the moment a worker reserves a message, not
# from its start: a prefetched message waits behind up to MULTIPLIER - 1 tasks
# on its pool process, then runs, so it can stay unacked for MULTIPLIER × the
# time limit. Below that Redis hands a waiting message to a second worker (one
# effect still, but a delivery counted towards EVENTS_MAX_DELIVERIES); the
# bridge warns at start-up (workers/bridge/__main__.py).
CELERY_VISIBILITY_TIMEOUT = env_int(
    "CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT * (CELERY_WORKER_PREFETCH_MULTIPLIER + 1), minimum=2)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_VISIBILITY_TIMEOUT must be larger than CELERY_TASK_TIME_LIMIT, "
        "or a slow task is handed to a second worker while the first still runs"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Sweep for unacked messages of dead workers often enough that the
    # visibility timeout, not the sweep period, bounds their return.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 4)),
    "unacked_restore_throttle": 1,
    **REDIS_OPTIONS,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True  # Redis may start after us
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # wait for it; auth errors exit (workers/celery.py)
# JSON only: a pickled message on a queue could run code in the worker.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
# Effects live in the database; nothing reads task results.
CELERY_TASK_IGNORE_RESULT = True
# Ack after the handler ran, and put the message back when its worker process
# dies: with idempotent handlers this turns "maybe lost" into "maybe twice, applied once".
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Celery 5.5+ soft shutdown: on SIGQUIT/SIGTERM (REMAP_SIGTERM=SIGQUIT) give
# running tasks this long, then requeue what is unacked at once instead of
# waiting out the visibility timeout.
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = env_float("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 10.0)
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = True
# The queues themselves (kombu objects) are declared in workers/celery.py, so
# loading these settings imports nothing of Celery.
CELERY_TASK_DEFAULT_QUEUE = "jobs"
# Flower builds its view from task events, so they are on from the start:
# every event shows as a task. They cost the worker's main process a publish
# per task state unless sent in batches (below: then a few percent); a
# deployment without Flower can turn them off (Flower, when it runs, switches
# them back on every 5 s).
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", True)
# Not Celery settings (no CELERY_ prefix): workers/worker_steps.py sends the
# buffered task events every WORKER_EVENTS_FLUSH_INTERVAL seconds, or once
# WORKER_EVENTS_BUFFER_LIMIT are waiting, instead of one PUBLISH per task.
# Flower sees a task's events at most this late; 0 keeps Celery's per-turn flush.
WORKER_EVENTS_FLUSH_INTERVAL = env_float("WORKER_EVENTS_FLUSH_INTERVAL", 0.1)
WORKER_EVENTS_BUFFER_LIMIT = env_int("WORKER_EVENTS_BUFFER_LIMIT", 300, minimum=1)
# Celery's Django fixup closes the database connection around every task
# unless it may reuse it: reusing it 1000 times took end-to-end PostgreSQL
# from ~115 to ~290 events/s in bench/.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_TASK_SEND_SENT_EVENT = False  # would add a publish per event on the bridge's hot path

# The bridge's audit (workers/bridge/audit.py) enqueues again a journaled event
# that has neither an effect nor a dead letter this long after publishing. It
# must exceed what keeps a task legitimately in flight: the visibility timeout
# (a dead worker's tasks come back after it) and a retry's countdown (capped
# below at half the visibility timeout).
EVENTS_AUDIT_DELAY = env_int("EVENTS_AUDIT_DELAY", 2 * CELERY_VISIBILITY_TIMEOUT + 60, minimum=1)
EVENTS_AUDIT_INTERVAL = env_int("EVENTS_AUDIT_INTERVAL", 10, minimum=1)
if EVENTS_AUDIT_DELAY <= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "EVENTS_AUDIT_DELAY must be larger than CELERY_VISIBILITY_TIMEOUT, or the audit re-enqueues "
        "tasks that are only waiting to come back from a dead worker"
    )
if EVENTS_AUDIT_DELAY <= EVENTS_CLAIM_PENDING_TTL:
    raise ImproperlyConfigured(
        "EVENTS_AUDIT_DELAY must be larger than EVENTS_CLAIM_PENDING_TTL, or the audit re-enqueues "
        "events a live bridge is still enqueueing"
    )

LOGGING = logging_config(env_str("LOG_FORMAT", "text"), env_str("LOG_LEVEL", "INFO"))

