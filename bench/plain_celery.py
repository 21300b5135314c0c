"""The ``celery-plain`` row's worker: Celery as a team would first write it.

``celery -A bench.plain_celery worker -c 2 -l WARNING``. One task per topic
over the same handler functions and the same database as ``workers.tasks``
(``apply_once(envelope.from_message(topic, message), HANDLERS[type])``), on an
app left at Celery's defaults: early acks, no late acks, no task events, the
default prefetch, the default queue; only the broker is set, the project's
password-protected Redis (``settings.REDIS_URL``; Celery masks the password
in its banner). None of the project's delivery machinery: no claims, no
retries, no dead letters, no poison guard. The bridge that feeds it is
``python -m bench.naive STATS_FILE celery-plain``.
"""

from __future__ import annotations

from e_clean_backend.bootstrap import setup

setup()

from celery import Celery, signals  # noqa: E402 - Django first, as the task bodies need it
from django.conf import settings  # noqa: E402

from workers import envelope  # noqa: E402
from workers.handlers import BY_TOPIC  # noqa: E402
from workers.handlers.base import apply_once  # noqa: E402

READY = "Plain Celery worker ready"

app = Celery("bench.plain_celery", broker=settings.REDIS_URL)


def _topic_task(topic: str, handlers: dict):
    @app.task(name=f"plain.{topic}")
    def run(message):
        event = envelope.from_message(topic, message)
        apply_once(event, handlers[event.type])

    return run


TASKS = {topic: _topic_task(topic, module.HANDLERS) for topic, module in BY_TOPIC.items()}


@signals.worker_ready.connect
def _say_ready(**_):
    # -l WARNING hides Celery's own "ready." line; the harness waits for this one.
    print(READY, flush=True)
