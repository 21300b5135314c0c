"""The ``dramatiq`` row's worker: the same handlers behind Dramatiq.

``dramatiq bench.dramatiq_app -p 2 -t 1`` (two processes of one thread each,
the shape of ``celery -A workers worker -c 2``). A RedisBroker on the
project's password-protected Redis (``settings.REDIS_URL``, never printed),
one actor per topic on a queue of its own (``dramatiq-<topic>``, distinct
from Celery's), each running ``apply_once`` over the topic's handler
functions on the same database. Dramatiq's defaults otherwise: acks after
the actor returns, the Retries middleware and the rest of the default stack.
The bridge that feeds it is ``python -m bench.naive STATS_FILE dramatiq``.
"""

from __future__ import annotations

from e_clean_backend.bootstrap import setup

setup()

import dramatiq  # noqa: E402 - Django first, as the actors need it
from django.conf import settings  # noqa: E402
from dramatiq.brokers.redis import RedisBroker  # noqa: E402

from workers import envelope  # noqa: E402
from workers.handlers import BY_TOPIC  # noqa: E402
from workers.handlers.base import apply_once  # noqa: E402

READY = "Worker process is ready for action."

broker = RedisBroker(url=settings.REDIS_URL)
dramatiq.set_broker(broker)


def _topic_actor(topic: str, handlers: dict):
    def handle(message):
        event = envelope.from_message(topic, message)
        apply_once(event, handlers[event.type])

    handle.__name__ = f"handle_{topic}"
    return dramatiq.actor(handle, actor_name=f"dramatiq_{topic}", queue_name=f"dramatiq-{topic}", broker=broker)


ACTORS = {topic: _topic_actor(topic, module.HANDLERS) for topic, module in BY_TOPIC.items()}
