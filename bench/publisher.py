"""The benchmark's publisher process: ``python -m bench.publisher URL EVENTS_FILE OUT_DIR``.

Events go out through the project's publisher path, ``workers.journal.publish``
(MULTI: XADD to the topic's journal + PUBLISH on the topic channel), exactly
the commands ``core.events.send`` issues. To keep the publisher from being the
bottleneck, many of those MULTI blocks share one network round trip: a
stand-in client hands ``journal.publish`` a recorder instead of a transaction
pipeline, and the recorder queues its commands, between MULTI and EXEC, on one
outer pipeline (``transaction=False``). Redis runs each MULTI block atomically,
as it would for one call; only the round trips are shared. The EXEC replies
give the subscriber counts, and an unheard event is counted the way
``journal.publish`` counts it.

Commands arrive on stdin as JSON lines ``{"name", "start", "stop", "rate",
"batch"}`` (rate null = as fast as possible); for each, the publish time of
every event (clock read right before its batch is sent) is written to
``OUT_DIR/pub-<name>.bin`` (array of doubles) and a JSON line is printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from array import array
from collections import Counter

MAXLEN = int(os.environ.get("EVENTS_JOURNAL_MAXLEN", "100000"))


class _Transaction:
    """What ``client.pipeline(transaction=True)`` returns inside journal.publish."""

    def __init__(self, outer):
        self._outer = outer

    def __enter__(self):
        self._outer.execute_command("MULTI")
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):  # xadd, publish, ... queue on the outer pipeline
        return getattr(self._outer, name)

    def execute(self):
        self._outer.execute_command("EXEC")
        return [None, 1]  # the real subscriber count is read from EXEC's reply after the round trip


class BatchingClient:
    """Stands in for the redis client given to ``journal.publish``."""

    def __init__(self, client):
        self.client = client
        self.outer = client.pipeline(transaction=False)

    def pipeline(self, transaction=True):
        assert transaction, "journal.publish must use MULTI"
        return _Transaction(self.outer)

    def incr(self, *args, **kwargs):  # pragma: no cover - execute() never reports 0 receivers
        raise AssertionError("unheard events are counted after the round trip")

    def flush(self, topics: list[str]) -> Counter:
        """Send everything queued; return unheard events per topic."""
        replies = self.outer.execute()
        unheard: Counter = Counter()
        # MULTI, XADD, PUBLISH, EXEC per event
        per_event = len(replies) // len(topics)
        for n, topic in enumerate(topics):
            exec_reply = replies[n * per_event + per_event - 1]
            if exec_reply[-1] == 0:
                unheard[topic] += 1
        return unheard


def run_phase(client, topics, payloads, spec) -> dict:
    from workers.journal import publish, unheard_key

    start, stop = spec["start"], spec["stop"]
    rate, batch = spec.get("rate"), max(1, int(spec.get("batch") or 1))
    times = array("d", bytes(8 * (stop - start)))
    batching = BatchingClient(client)
    unheard: Counter = Counter()
    began = time.time()
    next_slot = began
    i = start
    while i < stop:
        j = min(stop, i + batch)
        if rate:
            delay = next_slot - time.time()
            if delay > 0:
                time.sleep(delay)
            next_slot += (j - i) / rate
        for k in range(i, j):
            publish(batching, topics[k], payloads[k], MAXLEN)
        now = time.time()
        for k in range(i, j):
            times[k - start] = now
        unheard += batching.flush(topics[i:j])
        i = j
    elapsed = time.time() - began
    if unheard:
        with client.pipeline(transaction=False) as pipe:
            for topic, n in unheard.items():
                pipe.incrby(unheard_key(topic), n)
            pipe.execute()
    return {"times": times, "elapsed": elapsed, "unheard": sum(unheard.values())}


def main(argv: list[str]) -> int:
    url, events_file, out_dir = argv
    from e_clean_backend import redis_config

    from .events import read

    topics, payloads = read(events_file)
    client = redis_config.client(url)
    client.ping()
    print(json.dumps({"ready": len(payloads)}), flush=True)
    for line in sys.stdin:
        spec = json.loads(line)
        if spec.get("quit"):
            break
        result = run_phase(client, topics, payloads, spec)
        with open(os.path.join(out_dir, f"pub-{spec['name']}.bin"), "wb") as f:
            result["times"].tofile(f)
        n = spec["stop"] - spec["start"]
        print(json.dumps({"done": spec["name"], "events": n, "elapsed": result["elapsed"],
                          "rate": n / result["elapsed"] if result["elapsed"] else 0.0,
                          "unheard": result["unheard"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
