"""A worker consumer bootstep that sends task events in batches.

Celery's consumer already buffers task events (``task-received``,
``task-started``, ``task-succeeded``) and sends the buffer as one
``task.multi`` message, but it flushes at the next turn of its event loop,
and a turn handles one message: one ``PUBLISH`` per event handled, about a
sixth of a worker's time in bench/. This step keeps Celery's own buffer and
flush and only changes *when* it flushes: after ``WORKER_EVENTS_FLUSH_INTERVAL``
seconds, or as soon as the buffer holds ``WORKER_EVENTS_BUFFER_LIMIT`` events,
so one ``PUBLISH`` carries the events of many tasks. Flower and any event
receiver read ``task.multi`` messages as they already do; they see a task's
events at most one interval later.

Uses the dispatcher's public knobs (``on_send_buffered``, ``buffer_limit``,
``flush``) and Celery's bootstep API; nothing of Celery is copied or patched.
"""

from __future__ import annotations

from celery import bootsteps
from django.conf import settings


class BatchedTaskEvents(bootsteps.StartStopStep):
    """Flush the buffered task events on a timer instead of every loop turn."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        self.interval = settings.WORKER_EVENTS_FLUSH_INTERVAL
        self.scheduled = None
        self.consumer = c

    def start(self, c):
        # Runs after Events.start, also after every broker reconnect (which
        # builds a new dispatcher).
        dispatcher = c.event_dispatcher
        if dispatcher is None or c.hub is None or self.interval <= 0:
            return  # no event loop (or turned off): Celery's behaviour as is
        dispatcher.buffer_limit = settings.WORKER_EVENTS_BUFFER_LIMIT
        dispatcher.on_send_buffered = self._schedule
        self.scheduled = None

    def _schedule(self):
        if self.scheduled is None:
            self.scheduled = self.consumer.hub.call_later(self.interval, self._flush)

    def _flush(self):
        self.scheduled = None
        dispatcher = self.consumer.event_dispatcher
        if dispatcher is not None:
            dispatcher.flush()

    def stop(self, c):
        # Steps stop in reverse order: this runs before Events closes the
        # dispatcher, so what is buffered still goes out.
        if self.scheduled is not None:
            self.scheduled.cancel()
            self.scheduled = None
        if c.event_dispatcher is not None:
            try:
                c.event_dispatcher.flush()
            except Exception:  # noqa: BLE001 - monitoring only; never block a shutdown
                pass

    shutdown = stop
