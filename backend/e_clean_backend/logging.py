"""Log formats: readable text by default, one JSON object per line with
``LOG_FORMAT=json`` for log shippers.

Every line about an event carries ``topic``, ``type`` and ``event_id`` (pass
them with ``extra=event_fields(...)``), so grepping an event id finds its
whole story across bridge and workers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

EVENT_FIELDS = ("topic", "type", "event_id")


def event_fields(topic=None, type=None, event_id=None) -> dict:
    return {"topic": topic, "type": type, "event_id": event_id}


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s")

    def format(self, record):
        line = super().format(record)
        tags = [f"{k}={getattr(record, k)}" for k in EVENT_FIELDS if getattr(record, k, None)]
        return f"{line} [{' '.join(tags)}]" if tags else line


class JsonFormatter(logging.Formatter):
    def format(self, record):
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EVENT_FIELDS:
            value = getattr(record, key, None)
            if value:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def logging_config(fmt: str, level: str) -> dict:
    formatter = "json" if fmt.lower() == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"()": TextFormatter},
            "json": {"()": JsonFormatter},
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": formatter}},
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {
            # Celery's own worker logging is configured by Celery; these are ours.
            "workers": {"level": level.upper()},
            "core": {"level": level.upper()},
        },
    }
