"""Event workers: the Celery app, the bridge, the envelope and the handlers.

    celery -A workers worker     # finds the app in workers/celery.py
    python -m workers.bridge     # Redis pub/sub -> one Celery task per event

Nothing is imported here: the web process imports the event contract
(``workers.envelope``, ``workers.journal``) without building the Celery app.
"""
