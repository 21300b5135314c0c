"""Turning validated events into Celery task messages on the broker.

Messages are built by Celery itself (``app.amqp.create_task_message``), so a
worker reads them exactly like an ``apply_async`` call, and sent inside one
kombu ``Producer.batch()``: kombu 5.7 pipelines the Redis commands of the whole
batch into one round trip instead of one per event.
"""

from __future__ import annotations

from typing import Iterable

import msgspec
from celery.utils.nodenames import anon_nodename

from .celery import app
from .envelope import Event

# Redis commands per pipeline round trip (each task is an LPUSH).
PIPELINE_SIZE = 1000
# The task message's "origin" header; Celery would recompute it per message.
_ORIGIN = anon_nodename()
_json = msgspec.json.Encoder().encode


def enqueue_events(events: Iterable[Event], producer=None) -> int:
    """Publish one task per event (task id = event id, name and queue = topic).

    The message is Celery's own (``app.amqp.create_task_message``), published
    the way ``send_task_message`` publishes to a direct queue (anonymous
    exchange, routing key = queue name), minus its per-message work we do not
    use: publish signals, queue re-declaration, and ``saferepr`` of the
    arguments (``argsrepr`` is a short summary instead; Flower shows it).

    Raises on a broker error; then none or some of the batch may be on the
    broker (kombu says "delivery is uncertain"), and the caller retries the
    whole batch: the worker side's idempotency makes a resent one harmless.
    """
    amqp = app.amqp
    count = 0
    with app.producer_or_acquire(producer) as prod, prod.batch(max_size=PIPELINE_SIZE):
        for event in events:
            headers, properties, body, _ = amqp.create_task_message(
                event.id, event.topic, (event.to_message(),), {}, origin=_ORIGIN,
                argsrepr=f"({{'id': '{event.id}', 'type': '{event.type}', ...}},)", kwargsrepr="{}",
            )
            # The body is plain JSON values (ids, strings, the event's data):
            # msgspec writes the same JSON as kombu's serializer, several times
            # faster, and kombu sends bytes with an explicit content type as is.
            prod.publish(_json(body), exchange="", routing_key=event.topic, content_type="application/json",
                         content_encoding="utf-8", retry=False, delivery_mode=2, headers=headers, **properties)
            count += 1
    return count


class BrokerLink:
    """The bridge's own broker connection, replaced whenever a publish fails.

    Not the app's shared producer pool: after a broken batch that pool would
    hand the same dead connection out again, and closing it closes it for good.
    """

    def __init__(self):
        self.connection = None
        self.producer = None

    def __call__(self, events) -> int:
        if self.connection is None:
            self.connection = app.connection_for_write()
            self.producer = self.connection.Producer()
        try:
            return enqueue_events(events, producer=self.producer)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001 - it is already broken; dropping it is the point
                pass
        self.connection = self.producer = None
