"""The small JSON API: what the backend's clients call; each call publishes its
event after the transaction commits.

Staff sessions only (log in through the admin): it is a demo and operations
surface, not the public app's API.

    POST /api/jobs                     {"client_id", "title"}            -> job.created
    POST /api/jobs/<id>/accept         {"cleaner_id"}                    -> job.accepted
    POST /api/jobs/<id>/complete|cancel                                  -> job.completed|cancelled
    POST /api/payments                 {"payment_id", "job_id", "amount", "currency",
                                        "status": succeeded|failed|refunded, "reason"?} -> payment.<status>
    POST /api/chat                     {"sender_id", "recipient_id", "text", "job_id"?} -> chat.message
    POST /api/notifications            {"user_id", "title", "message", "kind"?}         -> notification.created
    GET  /api/notifications?user_id=N  the user's latest notifications
"""

from __future__ import annotations

import json
from functools import wraps

from django.db import IntegrityError, transaction
from django.http import JsonResponse
from django.views.decorators.http import require_http_methods, require_POST

from workers.envelope import InvalidEvent

from .events import publish_event
from .models import Job, Notification

PAYMENT_STATUSES = ("succeeded", "failed", "refunded")


def staff_json(view):
    """Staff session required; the body parsed as a JSON object; bad input is a 400 saying why."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not (request.user.is_authenticated and request.user.is_staff):
            return JsonResponse({"error": "log in as a staff user (/admin/)"}, status=403)
        body = {}
        if request.method == "POST" and request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                return JsonResponse({"error": "the body is not JSON"}, status=400)
            if not isinstance(body, dict):
                return JsonResponse({"error": "the body must be a JSON object"}, status=400)
        try:
            return view(request, body, *args, **kwargs)
        except InvalidEvent as exc:
            return JsonResponse({"error": exc.reason, "detail": exc.detail}, status=400)
        except (KeyError, TypeError, ValueError) as exc:
            return JsonResponse({"error": "bad request", "detail": str(exc)}, status=400)
        except IntegrityError as exc:  # e.g. a client_id with no user
            return JsonResponse({"error": "bad reference", "detail": str(exc)}, status=400)

    return wrapper


def _published(event_id: str, **extra) -> JsonResponse:
    return JsonResponse({"event_id": event_id, **extra}, status=202)


@require_POST
@staff_json
def create_job(request, body):
    with transaction.atomic():
        job = Job.objects.create(client_id=int(body["client_id"]), title=str(body["title"])[:200])
        event_id = publish_event("jobs", "job.created", {"job_id": job.pk})
    return _published(event_id, job_id=job.pk)


@require_POST
@staff_json
def job_action(request, body, job_id: int, action: str):
    data = {"job_id": job_id}
    if action == "accept":
        data["cleaner_id"] = int(body["cleaner_id"])
    type = {"accept": "job.accepted", "complete": "job.completed", "cancel": "job.cancelled"}[action]
    return _published(publish_event("jobs", type, data))


@require_POST
@staff_json
def payment(request, body):
    status = body.pop("status", None)
    if status not in PAYMENT_STATUSES:
        raise ValueError(f"status must be one of {PAYMENT_STATUSES}")
    return _published(publish_event("payments", f"payment.{status}", body))


@require_POST
@staff_json
def chat(request, body):
    return _published(publish_event("chat", "chat.message", body))


@require_http_methods(["GET", "POST"])
@staff_json
def notifications(request, body):
    if request.method == "POST":
        return _published(publish_event("notifications", "notification.created", body))
    rows = Notification.objects.filter(user_id=int(request.GET["user_id"]))[:50]
    return JsonResponse({"notifications": [
        {"title": n.title, "message": n.message, "kind": n.kind, "event_id": str(n.event_id),
         "created_at": n.created_at.isoformat(), "read": n.read} for n in rows]})

