"""The bridge's Prometheus metrics (served when BRIDGE_METRICS_PORT is set).

Counters are bumped once per batch, not per event, to keep the hot path short.
"""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("eclean_bridge_events_received", "Messages read from a topic channel or the journal", ["topic", "source"])
ENQUEUED = Counter("eclean_bridge_events_enqueued", "Events enqueued as Celery tasks", ["topic"])
DUPLICATES = Counter("eclean_bridge_events_duplicate", "Events skipped: already enqueued with the same content (replayed, re-sent, or seen by another bridge)", ["topic"])
UNRESOLVED = Gauge("eclean_bridge_events_unresolved", "Events held because another bridge's claim on them is pending; the checkpoint waits before them")
TAKEN_OVER = Counter("eclean_bridge_events_taken_over", "Events enqueued after another bridge's pending claim on them expired (it died or stalled)")
REDIS_STATE_LOST = Counter("eclean_bridge_redis_state_lost", "Times Redis came back without the journal, claims and checkpoints (restarted without persistence or flushed)")
REJECTED = Counter("eclean_bridge_events_rejected", "Messages refused and dead-lettered", ["topic", "reason"])
REPLAYED = Counter("eclean_bridge_events_replayed", "Journal entries read while catching up after a gap", ["topic"])
RECOVERED = Counter("eclean_bridge_events_recovered", "Accepted events enqueued again by the audit: no effect, no dead letter, not on the broker", ["topic"])
RECONNECTS = Counter("eclean_bridge_reconnects", "Times the bridge lost Redis and connected again")
BATCH_SIZE = Histogram("eclean_bridge_batch_size", "Messages per flush", buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000, 2000))
ENQUEUE_SECONDS = Histogram(
    "eclean_bridge_enqueue_seconds",
    "Time to claim and enqueue one batch",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
JOURNAL_LAG = Gauge(
    "eclean_bridge_journal_lag_seconds", "Age of the oldest journal entry not yet covered by the checkpoint; 0 when caught up", ["topic"]
)
SUBSCRIBED = Gauge("eclean_bridge_subscribed", "1 while subscribed to all topics")


class DeadLetterCollector:
    """``eclean_dead_letters{topic, stage}``: dead letters not replayed yet,
    read from the database at scrape time (a scrape every 15 s costs one
    GROUP BY; keeping a running count in the bridge would miss the workers')."""

    def collect(self):
        from django.db.models import Count
        from prometheus_client.core import GaugeMetricFamily

        from core.models import DeadLetter

        gauge = GaugeMetricFamily("eclean_dead_letters", "Dead letters waiting for replay", labels=["topic", "stage"])
        try:
            rows = (DeadLetter.objects.filter(replayed_at__isnull=True)
                    .values("topic", "stage").annotate(n=Count("id")).order_by())
            for row in rows:
                gauge.add_metric([row["topic"], row["stage"]], row["n"])
        finally:
            from django.db import connection

            connection.close()  # the scrape runs in prometheus-client's thread
        yield gauge


def serve(port: int, addr: str) -> None:
    from prometheus_client import REGISTRY, start_http_server

    REGISTRY.register(DeadLetterCollector())
    start_http_server(port, addr=addr)
