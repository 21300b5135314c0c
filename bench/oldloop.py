"""The baseline: the seed's "EventSubscriber", reimplemented small and faithful.

``python -m bench.oldloop STATS_FILE``. One process, one redis-py pub/sub
connection on the four topics (``decode_responses=True``, no keepalive tuning,
as the seed had after its fix), ``for message in pubsub.listen()``, and the
handler run inline: parse the envelope, ``apply_once(event, handler)``, log and
go on when it fails. No broker, no retries, no journal: while a handler runs,
the channel backs up in Redis' output buffer, and a buffer over
``client-output-buffer-limit pubsub`` makes Redis drop the connection; redis-py
then reconnects and re-subscribes silently and what was in the buffer is gone.
That is the behaviour being measured, so it is kept, and counted: every
``subscribe`` confirmation after the first four is a reconnect.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

log = logging.getLogger("bench.oldloop")


def main(argv: list[str]) -> int:
    stats_file = argv[0]
    from e_clean_backend.bootstrap import setup

    setup()
    import redis
    from django.conf import settings

    from workers import envelope
    from workers.handlers import MODULES
    from workers.handlers.base import apply_once

    handlers = {t: fn for module in MODULES for t, fn in module.HANDLERS.items()}
    stats = {"received": 0, "handled": 0, "duplicates": 0, "failed": 0, "rejected": 0, "subscribes": 0,
             "reconnects": 0}

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = redis.from_url(settings.REDIS_URL, decode_responses=True, socket_connect_timeout=10,
                            socket_timeout=None, socket_keepalive=True)
    pubsub = client.pubsub()
    pubsub.subscribe(*envelope.TOPICS)
    try:
        for message in pubsub.listen():
            if message["type"] == "subscribe":
                stats["subscribes"] += 1
                if stats["subscribes"] == len(envelope.TOPICS):
                    print(f"Event subscriber ready, listening to topics: {list(envelope.TOPICS)}", flush=True)
                stats["reconnects"] = max(0, (stats["subscribes"] - 1) // len(envelope.TOPICS))
                continue
            if message["type"] != "message":
                continue
            stats["received"] += 1
            try:
                event = envelope.parse(message["channel"], message["data"], settings.EVENTS_MAX_BYTES)
            except envelope.InvalidEvent as exc:
                stats["rejected"] += 1
                log.warning("Invalid event on %s: %s", message["channel"], exc)
                continue
            try:
                if apply_once(event, handlers[event.type]):
                    stats["handled"] += 1
                else:
                    stats["duplicates"] += 1
            except Exception:  # noqa: BLE001 - the seed logged and went on
                stats["failed"] += 1
                log.exception("Error handling %s %s", event.type, event.id)
    finally:
        with open(stats_file, "w") as f:
            json.dump(stats, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
