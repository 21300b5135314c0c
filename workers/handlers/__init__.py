"""One module per topic. Each declares ``TOPIC``, ``RETRY`` (its retry policy)
and ``HANDLERS`` (event type -> plain function over a validated Event).
``workers.tasks`` turns each module into that topic's Celery task."""

from . import chat, jobs, notifications, payments

MODULES = (jobs, notifications, chat, payments)
