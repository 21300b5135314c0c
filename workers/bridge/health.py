"""``python -m workers.bridge --check``: is a bridge subscribed and alive?

"The process exists" said nothing about the old subscriber. This checks what
matters: every topic channel has a subscriber (PUBSUB NUMSUB) and this
bridge's heartbeat, refreshed every second by its loop, has not expired.
"""

from __future__ import annotations

import json
import sys
import time

import redis
from django.conf import settings

from e_clean_backend import redis_config

from .. import envelope
from ..journal import heartbeat_key


def check() -> int:
    client = redis_config.client(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        numsub = dict(client.pubsub_numsub(*envelope.TOPICS))
        beat = client.get(heartbeat_key(settings.BRIDGE_NAME))
    except redis.RedisError as exc:
        print(f"unhealthy: Redis: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    missing = [t for t in envelope.TOPICS if not numsub.get(t.encode(), 0)]
    if missing:
        print(f"unhealthy: no subscriber on {missing}", file=sys.stderr)
        return 1
    if beat is None:
        print(f"unhealthy: no heartbeat from bridge {settings.BRIDGE_NAME!r} in {settings.BRIDGE_HEARTBEAT_TTL}s",
              file=sys.stderr)
        return 1
    age = time.time() - json.loads(beat)["time"]
    print(f"healthy: subscribed to {list(envelope.TOPICS)}, heartbeat {age:.1f}s old")
    return 0
