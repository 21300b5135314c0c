"""The Celery app: ``celery -A workers worker`` finds it as ``workers.app``.

All configuration lives in Django settings under the ``CELERY_`` prefix, each
value beside the reason for it (backend/e_clean_backend/settings.py).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from celery import Celery, signals

from . import broker_fixes

broker_fixes.apply()
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "e_clean_backend.settings")


def _settings_or_exit() -> None:
    """Load Django settings now: a bad value (``REDIS_PORT=abc``) is then one
    line and exit 2 for the worker and Flower, not a traceback from inside Celery."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 - evaluated for its side effect
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


# Only for the celery command (worker, flower, inspect ...): importing
# `workers` elsewhere keeps Django's lazy settings.
if Path(sys.argv[0]).name == "celery" or Path(sys.argv[0]).parent.name == "celery":
    _settings_or_exit()
app = Celery("workers")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The topic tasks are declared in one registry module, imported by every worker.
app.conf.imports = ("workers.tasks",)
# Every task message is checked before Celery reads its headers (workers/guard.py).
app.conf.worker_consumer = "workers.guard:GuardedConsumer"

log = logging.getLogger(__name__)


@signals.setup_logging.connect
def use_django_logging(**_):
    """One log format for every process: Django's LOGGING (text, or JSON with
    LOG_FORMAT=json), with topic/type/event_id on lines about an event."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.worker_init.connect
def refuse_wrong_credentials(**_):
    """Exit at once, non-zero, when Redis refuses our credentials.

    Celery retries broker connections forever (which we want while Redis is
    starting), and kombu counts a refused password as a connection error: a
    wrong password would be an endless, quiet retry loop. A Redis that is not
    up yet is left to Celery's own retry.
    """
    from workers.preflight import CredentialsRefused, check_credentials

    try:
        check_credentials(app.conf.broker_url)
    except CredentialsRefused as exc:
        print(f"celery worker: {exc}", file=sys.stderr, flush=True)
        os._exit(3)  # skip atexit handlers that would reconnect and log tracebacks
