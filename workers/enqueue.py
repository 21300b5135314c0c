"""Turning validated events into Celery task messages on the broker.

Messages are built by Celery itself (``app.amqp.create_task_message``), so a
worker reads them exactly like an ``apply_async`` call, and sent inside one
kombu ``Producer.batch()``: kombu 5.7 pipelines the Redis commands of the whole
batch into one round trip instead of one per event.
"""

from __future__ import annotations

from typing import Iterable

from .celery_app import app
from .envelope import Event

# Redis commands per pipeline round trip (each task is an LPUSH).
PIPELINE_SIZE = 1000


def enqueue_events(events: Iterable[Event], producer=None) -> int:
    """Publish one task per event (task id = event id, name and queue = topic).

    Raises on a broker error; then none or some of the batch may be on the
    broker (kombu says "delivery is uncertain"), and the caller retries the
    whole batch: the worker side's idempotency makes a resent one harmless.
    """
    amqp = app.amqp
    count = 0
    with app.producer_or_acquire(producer) as prod, prod.batch(max_size=PIPELINE_SIZE):
        for event in events:
            message = amqp.create_task_message(event.id, event.topic, (event.to_message(),), {})
            amqp.send_task_message(prod, event.topic, message, queue=event.topic, routing_key=event.topic, retry=False)
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
