"""Redis keys and the publish wire shared by the publisher and the bridge.

An event from ``publish_event`` is written twice in one MULTI: appended to a
capped stream per topic (the journal) and PUBLISHed on the topic channel. The
bridge takes live messages from the channel and, after any gap, reads what it
missed from the journal. MULTI matters: it makes "in the journal" and "sent to
subscribers" one step, which the bridge's checkpoint relies on.
"""

from __future__ import annotations

PREFIX = "eclean"
JOURNAL_FIELD = b"e"


def journal_key(topic: str) -> str:
    return f"{PREFIX}:journal:{topic}"


def accepted_key(topic: str) -> str:
    """Every event a bridge claimed, journaled or not: what the audit checks."""
    return f"{PREFIX}:accepted:{topic}"


def checkpoint_key(bridge_name: str, topic: str) -> str:
    return f"{PREFIX}:bridge:{bridge_name}:checkpoint:{topic}"


def audited_key(bridge_name: str, topic: str) -> str:
    """How far the bridge's audit has looked in ``accepted_key(topic)``."""
    return f"{PREFIX}:bridge:{bridge_name}:audited:{topic}"


def claim_key(event_id: str) -> str:
    return f"{PREFIX}:claim:{event_id}"


def heartbeat_key(bridge_name: str) -> str:
    return f"{PREFIX}:bridge:{bridge_name}:heartbeat"


def deliveries_key(event_id: str) -> str:
    return f"{PREFIX}:deliveries:{event_id}"


def unheard_key(topic: str) -> str:
    return f"{PREFIX}:publisher:unheard:{topic}"


def publish(client, topic: str, payload: bytes, maxlen: int) -> int:
    """Journal and publish one message; return how many subscribers heard it.

    A message nobody heard (no bridge subscribed) is counted in
    ``eclean:publisher:unheard:<topic>``; the journal still has it.
    """
    with client.pipeline(transaction=True) as pipe:
        pipe.xadd(journal_key(topic), {JOURNAL_FIELD: payload}, maxlen=maxlen, approximate=True)
        pipe.publish(topic, payload)
        _, receivers = pipe.execute()
    if receivers == 0:
        client.incr(unheard_key(topic))
    return receivers
