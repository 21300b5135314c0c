"""Every rule of the contract's envelope (workers/envelope.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from workers import envelope
from workers.envelope import InvalidEvent, parse

GOOD = {
    "jobs": [("job.created", {"job_id": 1}), ("job.accepted", {"job_id": 1, "cleaner_id": 2}),
             ("job.completed", {"job_id": 1}), ("job.cancelled", {"job_id": 1})],
    "payments": [
        ("payment.succeeded", {"payment_id": "pi_1", "job_id": 1, "amount": "49.90", "currency": "EUR"}),
        ("payment.failed", {"payment_id": "pi_1", "job_id": 1, "amount": "49.90", "currency": "EUR", "reason": "card"}),
        ("payment.failed", {"payment_id": "pi_1", "job_id": 1, "amount": "49.90", "currency": "EUR"}),
        ("payment.refunded", {"payment_id": "pi_1", "job_id": 1, "amount": "10", "currency": "USD"}),
    ],
    "chat": [("chat.message", {"sender_id": 1, "recipient_id": 2, "text": "hi"}),
             ("chat.message", {"sender_id": 1, "recipient_id": 2, "text": "hi", "job_id": 3})],
    "notifications": [("notification.created", {"user_id": 1, "title": "t", "message": "m"}),
                      ("notification.created", {"user_id": 1, "title": "t", "message": "m", "kind": "promo"})],
}


def msg(type, data, **over):
    body = {"id": str(uuid.uuid4()), "type": type, "data": data, **over}
    return json.dumps(body).encode()


@pytest.mark.parametrize("topic, type, data", [(t, ty, d) for t, items in GOOD.items() for ty, d in items])
def test_every_valid_type_parses(topic, type, data):
    event = parse(topic, msg(type, data))
    assert event.topic == topic and event.type == type and event.version == 1
    assert envelope.EVENT_TYPES[type][0] == topic
    # the task message round-trips to the same event
    assert envelope.from_message(topic, event.to_message()) == event


def test_every_type_of_the_contract_is_covered():
    assert {ty for items in GOOD.values() for ty, _ in items} == set(envelope.EVENT_TYPES)
    assert set(envelope.TOPICS) == {"jobs", "notifications", "chat", "payments"}


def test_optional_fields():
    event = parse("jobs", msg("job.created", {"job_id": 5}, occurred_at="2026-11-26T10:00:00.123+01:00", version=2))
    assert event.occurred_at.utcoffset().total_seconds() == 3600 and event.version == 2


def test_id_is_canonicalised():
    raw = str(uuid.uuid4()).upper()
    assert parse("jobs", msg("job.created", {"job_id": 1}, id=raw)).id == raw.lower()


def test_str_input_is_accepted():
    assert parse("jobs", msg("job.created", {"job_id": 1}).decode()).data.job_id == 1


BAD = [
    ("not_utf8", b'{"id": "\xff\xfe"}'),
    ("not_json", b"garbage"),
    ("not_json", b'{"id": '),
    ("bad_envelope", b"[1, 2, 3]"),
    ("bad_envelope", b'"a string"'),
    ("bad_envelope", b"null"),
    ("bad_envelope", json.dumps({"type": "job.created", "data": {"job_id": 1}}).encode()),  # no id
    ("bad_envelope", json.dumps({"id": str(uuid.uuid4()), "data": {"job_id": 1}}).encode()),  # no type
    ("bad_envelope", json.dumps({"id": str(uuid.uuid4()), "type": "job.created"}).encode()),  # no data
    ("bad_envelope", msg("job.created", {"job_id": 1}, extra=1)),
    ("bad_envelope", msg("job.created", {"job_id": 1}, version=0)),
    ("bad_envelope", msg("job.created", {"job_id": 1}, version="1")),
    ("bad_envelope", msg("job.created", {"job_id": 1}, occurred_at="yesterday")),
    ("bad_envelope", msg("job.created", {"job_id": 1}, occurred_at="2026-11-26T10:00:00")),  # no offset
    ("bad_envelope", json.dumps({"id": 12, "type": "job.created", "data": {"job_id": 1}}).encode()),
    ("bad_id", msg("job.created", {"job_id": 1}, id="not-a-uuid")),
    ("unknown_type", msg("job.exploded", {"job_id": 1})),
    ("unknown_type", msg("jobcreated", {"job_id": 1})),
    ("wrong_topic", msg("payment.succeeded", {"payment_id": "p", "job_id": 1, "amount": "1", "currency": "EUR"})),
    ("bad_data", msg("job.created", {})),
    ("bad_data", msg("job.created", {"job_id": "1"})),
    ("bad_data", msg("job.created", {"job_id": 0})),
    ("bad_data", msg("job.created", {"job_id": 1, "jobid": 1})),
    ("bad_data", msg("job.created", [1])),
    ("bad_data", msg("job.accepted", {"job_id": 1})),
]


@pytest.mark.parametrize("reason, raw", BAD)
def test_each_kind_of_bad_message_is_rejected_with_its_reason(reason, raw):
    with pytest.raises(InvalidEvent) as info:
        parse("jobs", raw)
    assert info.value.reason == reason, info.value.detail


@pytest.mark.parametrize("data", [
    {"payment_id": "p", "job_id": 1, "amount": 49.9, "currency": "EUR"},  # a float, not a decimal string
    {"payment_id": "p", "job_id": 1, "amount": "49,90", "currency": "EUR"},
    {"payment_id": "p", "job_id": 1, "amount": "1e3", "currency": "EUR"},
    {"payment_id": "p", "job_id": 1, "amount": "49.90", "currency": "eur"},
    {"payment_id": "", "job_id": 1, "amount": "49.90", "currency": "EUR"},
    {"payment_id": 7, "job_id": 1, "amount": "49.90", "currency": "EUR"},
])
def test_payment_data_rules(data):
    with pytest.raises(InvalidEvent) as info:
        parse("payments", msg("payment.succeeded", data))
    assert info.value.reason == "bad_data"


def test_the_event_id_is_kept_when_the_rest_is_wrong():
    event_id = str(uuid.uuid4())
    with pytest.raises(InvalidEvent) as info:
        parse("jobs", msg("job.created", {"job_id": "x"}, id=event_id))
    assert info.value.event_id == event_id


def test_size_limit_is_checked_before_parsing():
    big = b"{" + b" " * (envelope.DEFAULT_MAX_BYTES + 1)  # not even JSON: refused for size first
    with pytest.raises(InvalidEvent) as info:
        parse("jobs", big)
    assert info.value.reason == "too_large"
    assert parse("jobs", msg("job.created", {"job_id": 1}), max_bytes=200).data.job_id == 1
    with pytest.raises(InvalidEvent, match="too_large"):
        parse("jobs", msg("job.created", {"job_id": 1}), max_bytes=50)


def test_deeply_nested_json_is_refused_not_crashing():
    deep = b'{"id": "%s", "type": "job.created", "data": {"job_id": 1, "x": ' % str(uuid.uuid4()).encode()
    deep += b"[" * 50_000 + b"]" * 50_000 + b"}}"
    with pytest.raises(InvalidEvent) as info:
        parse("jobs", deep, max_bytes=1 << 20)
    assert info.value.reason in ("too_deep", "bad_envelope")
    nested = b"[" * 30_000 + b"]" * 30_000
    with pytest.raises(InvalidEvent) as info:
        parse("jobs", nested, max_bytes=1 << 20)
    assert info.value.reason in ("too_deep", "bad_envelope")


def test_unknown_topic():
    with pytest.raises(InvalidEvent, match="unknown_topic"):
        parse("billing", msg("job.created", {"job_id": 1}))


def test_events_are_immutable():
    event = parse("jobs", msg("job.created", {"job_id": 1}))
    with pytest.raises(AttributeError):
        event.type = "job.cancelled"
    with pytest.raises(AttributeError):
        event.data.job_id = 2


@pytest.mark.parametrize("topic, type, data, field", [
    ("chat", "chat.message", {"sender_id": 1, "recipient_id": 2, "text": "a\u0000b"}, "text"),
    ("notifications", "notification.created", {"user_id": 1, "title": "\u0000", "message": "m"}, "title"),
    ("notifications", "notification.created", {"user_id": 1, "title": "t", "message": "m", "kind": "k\u0000"}, "kind"),
    ("payments", "payment.failed", {"payment_id": "pi\u0000", "job_id": 1, "amount": "1", "currency": "EUR"},
     "payment_id"),
    ("payments", "payment.failed", {"payment_id": "pi", "job_id": 1, "amount": "1", "currency": "EUR",
                                    "reason": "x\u0000"}, "reason"),
])
def test_a_nul_character_in_any_text_is_refused(topic, type, data, field):
    with pytest.raises(InvalidEvent) as caught:
        parse(topic, msg(type, data))
    assert caught.value.reason == "bad_data" and f"`{field}` contains a NUL" in caught.value.detail
    # The text "\u0000" (backslash, u, zeros) is ordinary text.
    parse(topic, msg(type, {**data, field: "\\u0000" if field != "payment_id" else "pi"}))


@pytest.mark.parametrize("type, data, field, limit", [
    ("job.created", {"job_id": 0}, "job_id", envelope.MAX_BIGINT),
    ("job.accepted", {"job_id": 1, "cleaner_id": 0}, "cleaner_id", envelope.MAX_INT),
])
def test_ids_beyond_their_column_are_refused(type, data, field, limit):
    parse("jobs", msg(type, {**data, field: limit}))
    for bad in (limit + 1, 2**64, 10**30, 0, -1):
        with pytest.raises(InvalidEvent, match="bad_data"):
            parse("jobs", msg(type, {**data, field: bad}))
    for topic, type_, base in (("chat", "chat.message", {"sender_id": 1, "recipient_id": 2, "text": "t"}),
                               ("notifications", "notification.created", {"user_id": 1, "title": "t", "message": "m"})):
        user_field = "recipient_id" if topic == "chat" else "user_id"
        with pytest.raises(InvalidEvent, match="bad_data"):
            parse(topic, msg(type_, {**base, user_field: envelope.MAX_INT + 1}))


@pytest.mark.db
def test_id_limits_match_the_models_and_the_largest_ids_are_plain_misses(clean_db):
    """The envelope's limits are the columns' (checked here, so a model change
    cannot leave them behind), and the largest accepted id is a lookup that
    simply finds nothing, on SQLite and PostgreSQL alike."""
    from django.contrib.auth import get_user_model
    from django.db import models

    from core.models import Job, Payment

    limits = {models.AutoField: envelope.MAX_INT, models.BigAutoField: envelope.MAX_BIGINT}
    assert limits[type(get_user_model()._meta.pk)] == envelope.MAX_INT
    assert limits[type(Job._meta.pk)] == envelope.MAX_BIGINT
    assert limits[type(Payment._meta.pk)] == envelope.MAX_BIGINT
    assert not Job.objects.filter(pk=envelope.MAX_BIGINT).exists()
    assert not get_user_model().objects.filter(pk=envelope.MAX_INT).exists()
