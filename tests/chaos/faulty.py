"""The real worker app plus fault injection, for the chaos suite only:

    celery -A tests.chaos.faulty worker

``notification.created`` events whose title starts with a fault name misbehave
before the real handler runs:

    die          SIGKILL its own pool process, every time
    die-once     SIGKILL once per event, then behave
    slow:S       sleep S seconds, then behave
    flaky:N      raise a transient OperationalError N times per event, then behave

Everything else (the broker, acks, retries, dead letters) is the shipped code.
"""

import os
import signal
import time

from e_clean_backend.bootstrap import setup

from workers.celery import app  # noqa: F401 - `celery -A` finds the app here

setup()  # the handlers import models; the real worker loads them later

from django.conf import settings  # noqa: E402
from django.db import OperationalError  # noqa: E402

from workers.handlers import notifications  # noqa: E402

_real = notifications.HANDLERS["notification.created"]


def _redis():
    from e_clean_backend import redis_config

    return redis_config.client(settings.REDIS_URL)


def faulty(event):
    fault, _, arg = event.data.title.partition(":")
    if fault == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "die-once":
        if _redis().set(f"chaos:died:{event.id}", 1, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "slow":
        time.sleep(float(arg))
    elif fault == "flaky":
        if _redis().incr(f"chaos:flaky:{event.id}") <= int(arg):
            raise OperationalError("injected: database is locked")
    _real(event)


notifications.HANDLERS["notification.created"] = faulty
