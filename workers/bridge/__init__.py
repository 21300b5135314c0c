"""The pub/sub → Celery bridge. Run it with ``python -m workers.bridge``;
the loop is in ``loop.py``, enqueue-once claims in ``claims.py``."""
