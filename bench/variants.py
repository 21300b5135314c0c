"""Proposed changes, measured without touching ``workers/``: ``--variant NAME[,NAME]``.

Bridge side (``python -m bench.variants`` runs the shipped ``Bridge`` from
``workers.bridge`` with only its ``enqueue`` function replaced):

  lean-enqueue   workers/enqueue.py as shipped, plus: ``argsrepr``/``kwargsrepr``
                 and ``origin`` passed to ``create_task_message`` (Celery would
                 otherwise ``saferepr`` every argument and look up the node name
                 per message), and ``declare=[]`` (kombu otherwise copies and
                 re-binds the Queue and Exchange objects per message; the
                 queues are declared once at start instead).
  wire-enqueue   the task message built directly (Celery protocol 2 body, kombu
                 Redis envelope, msgspec) and LPUSHed in one pipeline per batch.

Worker side (``DJANGO_SETTINGS_MODULE=bench.variant_settings``):

  db-reuse         CELERY_DB_REUSE_MAX=1000 (Celery 5.7's Django fixup closes
                   the database connection before and after every task otherwise)
  no-task-events   CELERY_WORKER_SEND_TASK_EVENTS=False (one PUBLISH per task
                   event from the worker's main process)
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import sys
import uuid

BRIDGE_VARIANTS = ("lean-enqueue", "wire-enqueue")
WORKER_VARIANTS = ("db-reuse", "no-task-events")
ALL = BRIDGE_VARIANTS + WORKER_VARIANTS


def selected() -> set[str]:
    return {v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v}


def _argsrepr(event) -> str:
    # What Flower and the worker log show as the task's arguments: short and cheap.
    return f"({{'id': '{event.id}', 'type': '{event.type}', ...}},)"


def lean_enqueue(events, producer=None) -> int:
    from celery.utils.nodenames import anon_nodename

    from workers.celery_app import app
    from workers.enqueue import PIPELINE_SIZE

    amqp = app.amqp
    origin = _ORIGIN.setdefault("origin", anon_nodename())
    count = 0
    with app.producer_or_acquire(producer) as prod:
        if not _DECLARED:
            for queue in amqp.queues.values():
                queue(prod.channel).declare()
            _DECLARED.append(True)
        with prod.batch(max_size=PIPELINE_SIZE):
            for event in events:
                message = amqp.create_task_message(event.id, event.topic, (event.to_message(),), {},
                                                   argsrepr=_argsrepr(event), kwargsrepr="{}", origin=origin)
                amqp.send_task_message(prod, event.topic, message, queue=event.topic, routing_key=event.topic,
                                       retry=False, declare=[])
                count += 1
    return count


_ORIGIN: dict = {}
_DECLARED: list = []
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def wire_enqueue(events, producer=None) -> int:
    """Celery protocol 2 in kombu's Redis envelope, as ``apply_async`` would
    write it for these tasks (JSON, no eta/expires, priority 0)."""
    import msgspec
    from celery.utils.nodenames import anon_nodename

    from workers.celery_app import app

    encode = msgspec.json.encode
    origin = _ORIGIN.setdefault("origin", anon_nodename())
    client = _ORIGIN.get("client")
    if client is None:
        from django.conf import settings

        from e_clean_backend import redis_config

        client = _ORIGIN["client"] = redis_config.client(app.conf.broker_url or settings.REDIS_URL)
    pipe = client.pipeline(transaction=False)
    count = 0
    for event in events:
        body = base64.b64encode(encode([[event.to_message()], {}, _EMBED])).decode()
        headers = {
            "lang": "py", "task": event.topic, "id": event.id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": event.id,
            "parent_id": None, "argsrepr": _argsrepr(event), "kwargsrepr": "{}", "origin": origin,
            "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
        }
        properties = {
            "correlation_id": event.id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": event.topic}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        }
        pipe.lpush(event.topic, encode({"body": body, "content-encoding": "utf-8",
                                         "content-type": "application/json", "headers": headers,
                                         "properties": properties}))
        count += 1
    pipe.execute()
    return count


def main() -> int:
    from workers.bridge.__main__ import _setup, build_bridge

    _setup()
    from django.conf import settings

    from workers.celery_app import app

    chosen = selected()
    bridge = build_bridge()
    variant = lean_enqueue if "lean-enqueue" in chosen else wire_enqueue if "wire-enqueue" in chosen else None
    if variant is not None:
        def enqueue(events):
            try:
                variant(events)
            except Exception:
                app.pool.force_close_all()
                _ORIGIN.pop("client", None)
                raise

        bridge.enqueue = enqueue
        logging.getLogger("workers.bridge").info("bench variant: %s", variant.__name__)
    if settings.BRIDGE_METRICS_PORT:
        from prometheus_client import start_http_server

        start_http_server(settings.BRIDGE_METRICS_PORT, addr=settings.BRIDGE_METRICS_ADDR)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    return bridge.run()


if __name__ == "__main__":
    sys.exit(main())
