"""The event envelope: what a message on a topic channel must look like.

Validation is declared as msgspec structs, one per event type, so the rules in
ARCHITECTURE.md read as data here. :func:`parse` is the only way in: the bridge
calls it on every pub/sub message and the worker calls it again on every task
(a queue can be written by something other than our bridge).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

from .topics import TOPICS

# 64 KiB: far above any real event (a chat message is the largest), small
# enough that a runaway publisher cannot make the bridge buffer megabytes.
DEFAULT_MAX_BYTES = 64 * 1024
# For events already accepted once (a task's message, the journal, a dead
# letter): the size limit was checked at the door, so none applies again.
NO_SIZE_LIMIT = 1 << 30

# Ids are database keys, so each is refused at the door when its column could
# not hold it; otherwise PostgreSQL fails the lookup and SQLite finds nothing,
# and the event is retried as "not committed yet". Core's models use 64-bit
# keys (BigAutoField); users are django.contrib.auth's, whose key is a 32-bit
# AutoField. tests/workers/test_envelope.py checks these against the models.
MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
PositiveId = Annotated[int, msgspec.Meta(ge=1, le=MAX_BIGINT)]
UserId = Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
AmountText = Annotated[str, msgspec.Meta(pattern=r"^-?\d{1,10}(\.\d{1,2})?$")]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Data(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every ``data`` payload. Unknown fields are refused: a typo such
    as ``jobid`` is a dead letter with a reason, not a silent no-op."""


class JobRef(Data, frozen=True):
    job_id: PositiveId


class JobAccepted(Data, frozen=True):
    job_id: PositiveId
    cleaner_id: UserId


class PaymentData(Data, frozen=True):
    payment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    job_id: PositiveId
    amount: AmountText
    currency: Currency

    @property
    def decimal_amount(self) -> Decimal:
        return Decimal(self.amount)


class PaymentFailed(PaymentData, frozen=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class ChatMessage(Data, frozen=True):
    sender_id: UserId
    recipient_id: UserId
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    job_id: PositiveId | None = None


class NotificationCreated(Data, frozen=True):
    user_id: UserId
    title: ShortText
    message: Annotated[str, msgspec.Meta(max_length=4000)]
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=50)] | None = None


# type -> (topic, data struct). The topic is the channel the type may arrive on.
EVENT_TYPES: dict[str, tuple[str, type[Data]]] = {
    "job.created": ("jobs", JobRef),
    "job.accepted": ("jobs", JobAccepted),
    "job.completed": ("jobs", JobRef),
    "job.cancelled": ("jobs", JobRef),
    "payment.succeeded": ("payments", PaymentData),
    "payment.failed": ("payments", PaymentFailed),
    "payment.refunded": ("payments", PaymentData),
    "chat.message": ("chat", ChatMessage),
    "notification.created": ("notifications", NotificationCreated),
}


_strays = {name: t for name, (t, _) in EVENT_TYPES.items() if t not in TOPICS}
_typeless = [t for t in TOPICS if t not in {t for t, _ in EVENT_TYPES.values()}]
if _strays or _typeless:  # pragma: no cover - a programming error caught at import
    raise RuntimeError(f"event types on unknown topics {_strays}, topics without event types {_typeless}")


def types_of(topic: str) -> list[str]:
    return [name for name, (t, _) in EVENT_TYPES.items() if t == topic]


class _RawEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    # data stays raw until the type is known, so it is decoded once, straight
    # into its struct, and a deeply nested payload is refused without being
    # built as Python objects first.
    id: str
    type: str
    data: msgspec.Raw
    # RFC 3339 with an offset: a time without a zone is ambiguous across hosts.
    occurred_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    version: Annotated[int, msgspec.Meta(ge=1)] = 1


class Event(msgspec.Struct, frozen=True):
    """A validated event. Handlers receive this, never raw JSON."""

    id: str
    topic: str
    type: str
    data: Data
    occurred_at: datetime | None = None
    version: int = 1

    def to_message(self) -> dict[str, Any]:
        """The envelope as JSON-ready values: the Celery task's one argument."""
        return {
            "id": self.id,
            "type": self.type,
            "data": msgspec.to_builtins(self.data),
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "version": self.version,
        }


class InvalidEvent(ValueError):
    """A message that can never become a valid event. ``reason`` is a short
    machine-friendly kind (``not_json``, ``unknown_type`` ...), ``detail`` is for people."""

    def __init__(self, reason: str, detail: str, event_id: str | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.event_id = event_id


_envelope_decoder = msgspec.json.Decoder(_RawEnvelope)
_data_decoders = {name: msgspec.json.Decoder(cls) for name, (_, cls) in EVENT_TYPES.items()}


def parse(topic: str, raw: bytes | str, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """Validate one message from ``topic`` and return the :class:`Event`.

    Raises :class:`InvalidEvent` for anything the contract refuses; the size
    limit is checked before a byte is parsed.
    """
    if topic not in TOPICS:
        raise InvalidEvent("unknown_topic", f"topic {topic!r} is not one of {list(TOPICS)}")
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise InvalidEvent("too_large", f"{len(raw)} bytes, limit {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_utf8", str(exc)) from None
    try:
        env = _envelope_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent("bad_envelope", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("not_json", str(exc)) from None
    except RecursionError:
        raise InvalidEvent("too_deep", "JSON nested deeper than the decoder allows") from None
    try:
        event_id = str(uuid.UUID(env.id))
    except ValueError:
        raise InvalidEvent("bad_id", f"id {env.id[:80]!r} is not a UUID") from None
    spec = EVENT_TYPES.get(env.type)
    if spec is None:
        raise InvalidEvent("unknown_type", f"type {env.type[:80]!r} is not an event type", event_id)
    if spec[0] != topic:
        raise InvalidEvent(
            "wrong_topic", f"type {env.type!r} belongs to topic {spec[0]!r}, not {topic!r}", event_id
        )
    try:
        data = _data_decoders[env.type].decode(env.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidEvent("bad_data", f"{env.type}: {exc}", event_id) from None
    except RecursionError:
        raise InvalidEvent("too_deep", "JSON nested deeper than the decoder allows", event_id) from None
    for name in data.__struct_fields__:
        value = getattr(data, name)
        if isinstance(value, str) and "\x00" in value:
            # PostgreSQL text cannot hold NUL: refused here, on every database,
            # instead of a permanent failure in the worker.
            raise InvalidEvent("bad_data", f"{env.type}: `{name}` contains a NUL character (\\u0000)", event_id)
    if isinstance(data, PaymentData):
        try:
            data.decimal_amount
        except InvalidOperation:  # pragma: no cover - the pattern already refuses these
            raise InvalidEvent("bad_data", f"amount {data.amount!r} is not a decimal", event_id) from None
    return Event(event_id, topic, env.type, data, env.occurred_at, env.version)


def from_message(topic: str, message: dict[str, Any]) -> Event:
    """Re-validate the JSON value a task received (see :meth:`Event.to_message`)."""
    message = {k: v for k, v in message.items() if v is not None}
    return parse(topic, msgspec.json.encode(message), max_bytes=NO_SIZE_LIMIT)
