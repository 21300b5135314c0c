import pytest

from core.models import Notification
from workers.errors import NotYetCommitted

from .helpers import event, handle

pytestmark = pytest.mark.db


def test_one_notification_for_the_user(users):
    ev = event("notification.created", {"user_id": users["client"].pk, "title": "Welcome", "message": "Hello"})
    assert handle(ev) and not handle(ev)
    n = Notification.objects.get(event_id=ev.id)
    assert (n.user, n.title, n.message, n.kind, n.read) == (users["client"], "Welcome", "Hello", "general", False)


def test_kind_is_kept(users):
    ev = event("notification.created", {"user_id": users["client"].pk, "title": "t", "message": "m", "kind": "promo"})
    handle(ev)
    assert Notification.objects.get(event_id=ev.id).kind == "promo"


def test_unknown_user_is_transient(clean_db):
    with pytest.raises(NotYetCommitted):
        handle(event("notification.created", {"user_id": 555555, "title": "t", "message": "m"}))
