"""The benchmark's databases: a temporary SQLite file (WAL, as settings
configure it) and a fresh PostgreSQL database, both migrated and seeded once,
emptied of effects before every row run, removed at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timezone

from devtools.procs import postgres_unavailable

from .observe import CHANNEL, PostgresCommits, SqliteCommits
from .procs import REPO, python

EFFECT_TABLES = ("core_notification", "core_payment", "core_processedevent", "core_deadletter")


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


class Database:
    kind = ""
    url = ""

    def prepare(self, env: dict[str, str]) -> None:
        env = {**env, "DATABASE_URL": self.url}
        _run(python("backend/manage.py", "migrate", "--verbosity", "0"), env, f"migrate ({self.kind})")
        _run(python("-m", "bench.seed"), env, f"seed ({self.kind})")

    def reset(self) -> None:
        raise NotImplementedError

    def observer(self):
        raise NotImplementedError

    def handled_at(self) -> dict[str, float]:
        """event key -> handled_at (insert time of the handled mark), epoch seconds."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteDatabase(Database):
    kind = "sqlite"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="eclean-bench-db-")
        self.path = os.path.join(self.dir, "bench.sqlite3")
        self.url = f"sqlite:///{self.path}"

    def _connect(self):
        import sqlite3

        conn = sqlite3.connect(self.path, isolation_level=None, timeout=20)
        return conn

    def reset(self) -> None:
        conn = self._connect()
        try:
            for table in EFFECT_TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.execute("UPDATE core_job SET status = 'open'")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def observer(self):
        return SqliteCommits(self.path)

    def handled_at(self) -> dict[str, float]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT event_id, handled_at FROM core_processedevent").fetchall()
        finally:
            conn.close()
        out = {}
        for event_id, stamp in rows:
            when = datetime.fromisoformat(stamp)
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            out[event_id] = when.timestamp()
        return out

    def version(self) -> str:
        import sqlite3

        return sqlite3.sqlite_version

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_TRIGGER = f"""
CREATE OR REPLACE FUNCTION bench_committed() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', NEW.event_id::text);
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_committed AFTER INSERT ON core_processedevent
  FOR EACH ROW EXECUTE FUNCTION bench_committed();
"""


class PostgresDatabase(Database):
    """A database of its own on the machine's server, dropped at the end."""

    kind = "postgres"

    def __init__(self, admin_url: str):
        import psycopg

        self.admin_url = admin_url
        self.name = f"eclean_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = admin_url.rsplit("/", 1)[0] + "/" + self.name

    @staticmethod
    def unavailable(admin_url: str) -> str | None:
        return postgres_unavailable(admin_url)

    def prepare(self, env: dict[str, str]) -> None:
        super().prepare(env)
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(_TRIGGER)

    def reset(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(EFFECT_TABLES)}")
            conn.execute("UPDATE core_job SET status = 'open'")
            conn.execute("VACUUM ANALYZE")

    def observer(self):
        return PostgresCommits(self.url)

    def handled_at(self) -> dict[str, float]:
        import psycopg

        with psycopg.connect(self.url) as conn:
            rows = conn.execute("SELECT event_id::text, handled_at FROM core_processedevent").fetchall()
        return {event_id.replace("-", ""): when.timestamp() for event_id, when in rows}

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def close(self) -> None:
        import psycopg

        for attempt in range(3):
            try:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                return
            except Exception:  # noqa: BLE001 - retried, then reported
                if attempt == 2:
                    print(f"[bench] could not drop database {self.name}; drop it by hand", flush=True)
                time.sleep(1)
