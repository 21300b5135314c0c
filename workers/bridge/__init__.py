"""The pub/sub → Celery bridge. Run it with ``python -m workers.bridge``.

``loop.py`` keeps the schedule and connects the collaborators:
``subscription.py``, ``cursor.py`` (journal replay and checkpoint),
``flusher.py`` (validate, claim, enqueue), ``claims.py``, ``duties.py`` and
``outbox.py``, all given one ``config.BridgeConfig``.
"""
