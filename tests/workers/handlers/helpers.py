import json
import uuid

from workers import envelope
from workers.handlers import MODULES
from workers.handlers.base import apply_once

HANDLERS = {t: h for m in MODULES for t, h in m.HANDLERS.items()}


def event(type: str, data: dict, event_id: str | None = None) -> envelope.Event:
    topic = envelope.EVENT_TYPES[type][0]
    raw = json.dumps({"id": event_id or str(uuid.uuid4()), "type": type, "data": data})
    return envelope.parse(topic, raw)


def handle(ev: envelope.Event) -> bool:
    return apply_once(ev, HANDLERS[ev.type])
