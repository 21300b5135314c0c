"""Event workers: the Celery app, the bridge, the envelope and the handlers.

    celery -A workers worker     # runs the topic tasks (workers/tasks.py)
    python -m workers.bridge     # Redis pub/sub -> one Celery task per event
"""

import sys
from pathlib import Path

# The Django project (settings, models) lives in backend/.
_BACKEND = str(Path(__file__).resolve().parent.parent / "backend")
if _BACKEND not in sys.path:
    sys.path.insert(0, _BACKEND)

from .celery_app import app  # noqa: E402

__all__ = ("app",)
