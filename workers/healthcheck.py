"""``python -m workers.healthcheck``: does the Celery worker on this host answer?

A running process says nothing: a worker can be alive yet cut off from the
broker, or stuck. This sends a control ``ping`` over the broker and exits 0
only if a worker whose node name ends with ``@<this hostname>`` (the default
``celery@%h``, whatever the part before the ``@``) replies in time; otherwise
it prints one line on stderr and exits 1. Docker's HEALTHCHECK runs it inside
the worker's container, so the hostname is the worker's.

WORKER_HEALTHCHECK_TIMEOUT (seconds, default 3) bounds the wait for replies;
keep the compose healthcheck's timeout above it plus a broker connect.
"""

from __future__ import annotations

import os
import socket
import sys

PING_TIMEOUT = float(os.environ.get("WORKER_HEALTHCHECK_TIMEOUT", "3"))


def check() -> int:
    suffix = f"@{socket.gethostname()}"
    try:
        from e_clean_backend.bootstrap import setup

        setup()
        from workers.celery import app

        with app.connection_for_write() as conn:
            # One try: the broker's own retry-forever policy would hang the check.
            conn.ensure_connection(max_retries=1)
            replies = app.control.ping(timeout=PING_TIMEOUT, connection=conn)
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy", in one line
        reason = str(exc).splitlines()[0] if str(exc) else ""
        print(f"unhealthy: broker: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    nodes = [name for reply in replies for name in reply]
    local = [name for name in nodes if name.endswith(suffix)]
    if not local:
        print(f"unhealthy: no worker *{suffix} answered ping in {PING_TIMEOUT:g}s (answered: {nodes})",
              file=sys.stderr)
        return 1
    print(f"healthy: {', '.join(local)} answered ping")
    return 0


if __name__ == "__main__":
    sys.exit(check())
