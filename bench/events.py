"""The benchmark's event stream: one fixed mix, the same for every row and run.

Every event refers to rows that :mod:`bench.seed` creates (users 1..USERS,
jobs 1..JOBS), so every handler succeeds and commits: no retries, no dead
letters, nothing but the normal path is measured. Job events are all
``job.created`` (it only reads the job), so their order never matters.
"""

from __future__ import annotations

import random
import struct
import uuid
from datetime import datetime, timezone

import msgspec

USERS = 100
JOBS = 200

# type, share of the stream
MIX = (
    ("notification.created", 40),
    ("job.created", 25),
    ("chat.message", 20),
    ("payment.succeeded", 10),
    ("payment.failed", 5),
)
TOPIC_OF = {
    "notification.created": "notifications",
    "job.created": "jobs",
    "chat.message": "chat",
    "payment.succeeded": "payments",
    "payment.failed": "payments",
}
TOPICS = ("jobs", "notifications", "chat", "payments")
_HEADER = struct.Struct("<BI")


def _data(kind: str, i: int, rnd: random.Random) -> dict:
    if kind == "notification.created":
        return {"user_id": rnd.randint(1, USERS), "title": "Reminder",
                "message": "Your cleaning is scheduled for tomorrow at 10:00.", "kind": "reminder"}
    if kind == "job.created":
        return {"job_id": rnd.randint(1, JOBS)}
    if kind == "chat.message":
        sender = rnd.randint(1, USERS)
        recipient = sender % USERS + 1
        return {"sender_id": sender, "recipient_id": recipient, "job_id": rnd.randint(1, JOBS),
                "text": "Hi! I will be there ten minutes early, is the key with the concierge?"}
    amount = f"{rnd.randint(20, 200)}.{rnd.randint(0, 99):02d}"
    data = {"payment_id": f"pay_{i:08d}", "job_id": rnd.randint(1, JOBS), "amount": amount, "currency": "EUR"}
    if kind == "payment.failed":
        data["reason"] = "card_declined"
    return data


def generate(count: int, seed: int = 538) -> tuple[list[str], list[str], list[bytes]]:
    """``count`` events as (ids, topics, payloads); the envelope is built like
    ``core.events.build_event`` builds it and checked with ``envelope.parse``."""
    from workers import envelope

    rnd = random.Random(seed)
    kinds = [k for k, share in MIX for _ in range(share)]
    occurred = datetime.now(timezone.utc).isoformat()
    ids, topics, payloads = [], [], []
    for i in range(count):
        kind = kinds[rnd.randrange(len(kinds))]
        event_id = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        payload = msgspec.json.encode(
            {"id": event_id, "type": kind, "data": _data(kind, i, rnd), "occurred_at": occurred, "version": 1}
        )
        if i < 1000:  # the stream is generated from 5 shapes; checking a prefix proves them all
            envelope.parse(TOPIC_OF[kind], payload)
        ids.append(event_id)
        topics.append(TOPIC_OF[kind])
        payloads.append(payload)
    return ids, topics, payloads


def write(path: str, topics: list[str], payloads: list[bytes]) -> None:
    with open(path, "wb") as f:
        for topic, payload in zip(topics, payloads):
            f.write(_HEADER.pack(TOPICS.index(topic), len(payload)))
            f.write(payload)


def read(path: str) -> tuple[list[str], list[bytes]]:
    with open(path, "rb") as f:
        blob = f.read()
    topics, payloads = [], []
    pos, size = 0, _HEADER.size
    while pos < len(blob):
        topic, length = _HEADER.unpack_from(blob, pos)
        pos += size
        topics.append(TOPICS[topic])
        payloads.append(blob[pos:pos + length])
        pos += length
    return topics, payloads


def key(event_id: str) -> str:
    """The form ids are compared in: 32 hex digits (SQLite stores UUIDs so)."""
    return event_id.replace("-", "").lower()
