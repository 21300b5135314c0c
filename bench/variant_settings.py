"""Settings for ``--variant`` runs: the project's settings plus the worker-side
changes named in BENCH_VARIANT (see bench/variants.py). Never used otherwise."""

import os

from e_clean_backend.settings import *  # noqa: F401,F403

_chosen = {v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v}
if "db-reuse" in _chosen:
    CELERY_DB_REUSE_MAX = 1000
if "no-task-events" in _chosen:
    CELERY_WORKER_SEND_TASK_EVENTS = False
