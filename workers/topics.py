"""The topics: the one list every other name derives from.

A topic is at once the Redis pub/sub channel and journal stream the publisher
writes to, the Celery queue and task name the bridge enqueues to, and the
handler module (``workers/handlers/<topic>.py``) that task runs. The envelope
(its event types), the settings (``TOPIC_QUEUES``), the Celery queues, the
tasks and the handlers are all built from this tuple and checked against it
at import. Part of the event contract: it imports nothing.
"""

TOPICS: tuple[str, ...] = ("jobs", "notifications", "chat", "payments")
