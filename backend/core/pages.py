"""The notifications page (its socket is ``core/consumers.py``)."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from . import realtime
from .models import Notification


@login_required
def notifications_page(request):
    """The logged-in user's notifications, newest first; the page's script
    (core/static/core/notifications.js) keeps it live over /ws/notifications/."""
    mine = Notification.objects.filter(user=request.user)
    rows = list(mine.order_by("-pk")[: settings.REALTIME_BACKLOG])
    return render(request, "core/notifications.html", {
        "unread": mine.filter(read=False).count(),
        "initial": [realtime.payload(n) for n in rows],
    })
