"""Entry point: ``python -m workers.bridge`` (``--check`` for the health check).

Exit codes: 0 stopped by SIGTERM/SIGINT (or healthy, with --check), 1 unhealthy
(--check), 2 bad configuration, 3 Redis refused the credentials. A
configuration error is final, so it exits instead of retrying; a Redis that is
down is waited for.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from django.core.exceptions import ImproperlyConfigured


def _setup() -> None:
    from e_clean_backend.bootstrap import setup

    setup()


def build_bridge():
    """The bridge and its collaborators, from one config read from settings."""
    from core.deadletters import build, record_many
    from workers.enqueue import BrokerLink

    from .config import BridgeConfig
    from .loop import Bridge
    from .outbox import Relay

    # Zulip's rule (no consumer for a queue nobody handles) holds by
    # construction: tasks, queues and topics all come from workers/topics.py.
    config = BridgeConfig.from_settings()

    def dead_letter(rows):
        record_many([build(**row) for row in rows])

    return Bridge(config, enqueue=BrokerLink(), dead_letter=dead_letter,
                  outbox=Relay(config.outbox_delay, config.accepted_maxlen))


def warn_about_prefetch_wait() -> None:
    """A prefetched task stays unacked for up to prefetch multiplier × time
    limit before it even finishes; a visibility timeout below that makes Redis
    hand it to a second worker while the first still holds it."""
    from django.conf import settings

    longest = settings.CELERY_WORKER_PREFETCH_MULTIPLIER * settings.CELERY_TASK_TIME_LIMIT
    if settings.CELERY_VISIBILITY_TIMEOUT <= longest:
        logging.getLogger("workers.bridge").warning(
            "CELERY_VISIBILITY_TIMEOUT (%ss) is not above CELERY_WORKER_PREFETCH_MULTIPLIER × CELERY_TASK_TIME_LIMIT "
            "(%s × %ss): a task waiting in a worker's prefetch can be delivered twice (applied once, but counted "
            "towards EVENTS_MAX_DELIVERIES); raise CELERY_VISIBILITY_TIMEOUT above %ss",
            settings.CELERY_VISIBILITY_TIMEOUT, settings.CELERY_WORKER_PREFETCH_MULTIPLIER,
            settings.CELERY_TASK_TIME_LIMIT, longest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.bridge", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="health check: exit 0 if a bridge is subscribed and alive")
    args = parser.parse_args(argv)
    try:
        _setup()
        from workers.preflight import CredentialsRefused

        if args.check:
            from .health import check

            return check()
        bridge = build_bridge()
    except ImproperlyConfigured as exc:
        print(f"bridge: configuration error: {exc}", file=sys.stderr)
        return 2
    except CredentialsRefused as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 3

    from django.conf import settings

    warn_about_prefetch_wait()
    if settings.BRIDGE_METRICS_PORT:
        from .metrics import serve

        serve(settings.BRIDGE_METRICS_PORT, settings.BRIDGE_METRICS_ADDR)
        logging.getLogger("workers.bridge").info(
            "Metrics on http://%s:%d/metrics", settings.BRIDGE_METRICS_ADDR, settings.BRIDGE_METRICS_PORT)
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    try:
        return bridge.run()
    except CredentialsRefused as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
