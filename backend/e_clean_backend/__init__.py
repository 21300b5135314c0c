import sys
from pathlib import Path

# The repo root holds the `workers` package (the Celery app the publisher and
# the replay command enqueue through); make it importable from backend/.
_REPO = str(Path(__file__).resolve().parent.parent.parent)
if _REPO not in sys.path:
    sys.path.append(_REPO)
