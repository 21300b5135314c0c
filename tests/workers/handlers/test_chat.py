import pytest

from core.models import Notification
from workers.errors import NotYetCommitted

from .helpers import event, handle

pytestmark = pytest.mark.db


def test_message_notifies_the_recipient(users):
    ev = event("chat.message", {"sender_id": users["client"].pk, "recipient_id": users["cleaner"].pk,
                                "text": "Door code is 1234"})
    handle(ev)
    n = Notification.objects.get(event_id=ev.id)
    assert (n.user, n.kind, n.message) == (users["cleaner"], "chat.message", "Door code is 1234")
    assert "client" in n.title


def test_long_message_is_previewed(users):
    ev = event("chat.message", {"sender_id": users["client"].pk, "recipient_id": users["cleaner"].pk,
                                "text": "x" * 1000})
    handle(ev)
    assert len(Notification.objects.get(event_id=ev.id).message) == 200


def test_unknown_recipient_is_transient(users):
    ev = event("chat.message", {"sender_id": users["client"].pk, "recipient_id": 987654, "text": "hi"})
    with pytest.raises(NotYetCommitted):
        handle(ev)
    assert not Notification.objects.exists()
