"""The naive bridge: pub/sub in, one ``task.apply_async()`` per event out.

``python -m bench.naive STATS_FILE``. What a first Celery port of the old loop
looks like: the same envelope validation as our bridge, the same tasks
(``workers.tasks.TOPIC_TASKS``, task id = event id), but one broker round trip
per event, no batching, no claims and no journal. The subscription uses the
project's Redis options and, like redis-py's default, re-subscribes silently
after a dropped connection (counted as a reconnect).
"""

from __future__ import annotations

import json
import logging
import sys

log = logging.getLogger("bench.naive")


def main(argv: list[str]) -> int:
    stats_file = argv[0]
    from e_clean_backend.bootstrap import setup

    setup()
    import signal

    from django.conf import settings

    from core.deadletters import record
    from e_clean_backend import redis_config
    from workers import envelope
    from workers.tasks import TOPIC_TASKS

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
                    print(f"Naive bridge ready, listening to topics: {list(envelope.TOPICS)}", flush=True)
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
            TOPIC_TASKS[event.topic].apply_async((event.to_message(),), task_id=event.id)
            stats["enqueued"] += 1
    finally:
        with open(stats_file, "w") as f:
            json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
