"""The measuring side: threads that see events arrive and stamp the time.

* :class:`QueueDrainer` — events enqueued as Celery tasks (bridge rows).
* :class:`SqliteCommits`, :class:`PostgresCommits` — events whose effect committed.

Each records ``seen[event key] = first time seen``; see bench/__init__.py for
why each is a sound (upper-bound) clock.
"""

from __future__ import annotations

import threading
import time

import msgspec

from .events import TOPICS, key


class Observer(threading.Thread):
    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self.seen: dict[str, float] = {}
        self.duplicates = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def record(self, keys, when: float) -> None:
        seen = self.seen
        for k in keys:
            if k in seen:
                self.duplicates += 1
            else:
                seen[k] = when

    def run(self) -> None:
        try:
            self.setup()
            while not self._halt.is_set():
                self.poll()
        except BaseException as exc:  # noqa: BLE001 - reported by the harness
            self.error = exc
        finally:
            self.teardown()

    def setup(self) -> None:
        pass

    def poll(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        pass

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def wait_for(self, keys: list[str], idle_timeout: float, progress=None) -> list[str]:
        """Wait until every key is seen, or nothing new arrived for ``idle_timeout``;
        return the keys never seen."""
        missing = [k for k in keys if k not in self.seen]
        last_count, last_change = len(missing), time.monotonic()
        while missing:
            if self.error:
                raise RuntimeError(f"{self.name} failed: {self.error!r}") from self.error
            time.sleep(0.02)
            missing = [k for k in missing if k not in self.seen]
            if len(missing) != last_count:
                last_count, last_change = len(missing), time.monotonic()
                if progress:
                    progress(len(keys) - len(missing))
            elif time.monotonic() - last_change > idle_timeout:
                break
        return missing


class _Headers(msgspec.Struct):
    id: str


class _TaskMessage(msgspec.Struct):
    headers: _Headers


class QueueDrainer(Observer):
    """Pops task messages off the topic queues in batches.

    One pipelined round trip takes up to BATCH messages from each queue
    (``RPOP key count``, Redis 6.2+); when all are empty it blocks in
    ``BRPOP`` on the four, so the next message is seen the moment it lands.
    """

    BATCH = 2000

    def __init__(self, url: str):
        super().__init__("queue-drainer")
        self.url = url
        self.messages = 0

    def setup(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.url)
        self.decode = msgspec.json.Decoder(_TaskMessage).decode

    def poll(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for queue in TOPICS:
            pipe.rpop(queue, self.BATCH)
        replies = pipe.execute()
        now = time.time()
        items = [m for reply in replies if reply for m in reply]
        if not items:
            popped = self.client.brpop(list(TOPICS), timeout=0.05)
            if popped is None:
                return
            now = time.time()
            items = [popped[1]]
        decode = self.decode
        self.messages += len(items)
        self.record([key(decode(m).headers.id) for m in items], now)

    def teardown(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


class SqliteCommits(Observer):
    """Polls the handled marks by rowid: SQLite commits one writer at a time,
    so a row visible now with a higher rowid committed after the ones before."""

    INTERVAL = 0.001

    def __init__(self, path: str):
        super().__init__("sqlite-commits")
        self.path = path
        self.last = 0

    def setup(self) -> None:
        import sqlite3

        self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout=1000")

    def poll(self) -> None:
        rows = self.conn.execute(
            "SELECT rowid, event_id FROM core_processedevent WHERE rowid > ? ORDER BY rowid", (self.last,)
        ).fetchall()
        now = time.time()
        if rows:
            self.last = rows[-1][0]
            self.record([k for _, k in rows], now)
        else:
            time.sleep(self.INTERVAL)

    def teardown(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()


CHANNEL = "bench_committed"


class PostgresCommits(Observer):
    """LISTENs for the bench trigger's ``pg_notify``: delivered at commit."""

    def __init__(self, url: str):
        super().__init__("postgres-commits")
        self.url = url

    def setup(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.url, autocommit=True)
        self.conn.execute(f"LISTEN {CHANNEL}")

    def poll(self) -> None:
        for note in self.conn.notifies(timeout=0.05):
            self.record((key(note.payload),), time.time())

    def teardown(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
