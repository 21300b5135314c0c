"""``python -m bench.seed``: the rows every benchmark event refers to.

Runs under the benchmark's DATABASE_URL after ``manage.py migrate``: users
1..USERS and jobs 1..JOBS with fixed primary keys, so one event stream fits
the SQLite and the PostgreSQL database alike. Half the jobs have a cleaner.
"""

from __future__ import annotations

import sys


def main() -> int:
    from e_clean_backend.bootstrap import setup

    setup()
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from core.models import Job

    from .events import JOBS, USERS

    User = get_user_model()
    with transaction.atomic():
        User.objects.bulk_create([User(pk=i, username=f"bench{i}") for i in range(1, USERS + 1)])
        Job.objects.bulk_create([
            Job(pk=i, client_id=(i % USERS) + 1, cleaner_id=((i + 7) % USERS) + 1 if i % 2 else None,
                title=f"Flat {i}, {2 + i % 3} rooms")
            for i in range(1, JOBS + 1)
        ])
    if connection.vendor == "postgresql":  # explicit pks: move the sequences past them
        with connection.cursor() as cur:
            for model in (User, Job):
                table = model._meta.db_table
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
    print(f"seeded {USERS} users, {JOBS} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
