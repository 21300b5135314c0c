"""The naive bridge: pub/sub in, one enqueue per event out.

``python -m bench.naive STATS_FILE [TARGET]``. What a first port of the old
loop onto a task queue looks like: the same envelope validation as our
bridge, but one broker round trip per event, no batching, no claims and no
journal. The subscription uses the project's Redis options and, like
redis-py's default, re-subscribes silently after a dropped connection
(counted as a reconnect). TARGET says where each event goes:

  naive         ``workers.tasks.TOPIC_TASKS[topic].apply_async`` (our tasks, task id = event id)
  celery-plain  the same call on bench/plain_celery.py's default-configured app
  dramatiq      ``actor.send`` on bench/dramatiq_app.py's actors
"""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("bench.naive")


READY = "Pub/sub bridge ready"


def _enqueue(target: str):
    """The one call per event of ``target``: ``enqueue(event)``."""
    if target == "dramatiq":
        from .dramatiq_app import ACTORS

        return lambda event: ACTORS[event.topic].send(event.to_message())
    if target == "celery-plain":
        from .plain_celery import TASKS
    elif target == "naive":
        from workers.tasks import TOPIC_TASKS as TASKS
    else:
        raise SystemExit(f"unknown target {target!r}")
    return lambda event: TASKS[event.topic].apply_async((event.to_message(),), task_id=event.id)


def main(argv: list[str]) -> int:
    stats_file = argv[0]
    target = argv[1] if len(argv) > 1 else "naive"
    from e_clean_backend.bootstrap import setup

    setup()
    import signal

    from django.conf import settings

    from core.deadletters import record
    from e_clean_backend import redis_config
    from workers import envelope

    enqueue = _enqueue(target)

    stats = {"received": 0, "enqueued": 0, "rejected": 0, "subscribes": 0, "reconnects": 0}
    shutdown = []
    signal.signal(signal.SIGTERM, lambda *_: shutdown.append(1))
    signal.signal(signal.SIGINT, lambda *_: shutdown.append(1))
    pubsub = redis_config.client(settings.REDIS_URL).pubsub()
    pubsub.subscribe(*envelope.TOPICS)
    try:
        while not shutdown:
            message = pubsub.get_message(timeout=0.25)
            if message is None:
                continue
            if message["type"] == "subscribe":
                stats["subscribes"] += 1
                if stats["subscribes"] == len(envelope.TOPICS):
                    print(f"{READY} ({target}), listening to topics: {list(envelope.TOPICS)}", flush=True)
                stats["reconnects"] = max(0, (stats["subscribes"] - 1) // len(envelope.TOPICS))
                continue
            if message["type"] != "message":
                continue
            stats["received"] += 1
            topic = message["channel"].decode()
            try:
                event = envelope.parse(topic, message["data"], settings.EVENTS_MAX_BYTES)
            except envelope.InvalidEvent as exc:
                stats["rejected"] += 1
                log.warning("Rejected message (%s): %s", exc.reason, exc.detail)
                record(topic=topic, stage="bridge", reason=exc.reason, detail=exc.detail,
                       payload=message["data"], event_id=exc.event_id)
                continue
            enqueue(event)
            stats["enqueued"] += 1
    finally:
        with open(stats_file, "w") as f:
            json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
