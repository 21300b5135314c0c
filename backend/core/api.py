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

Every answer is JSON, errors included: ``{"error": <code>, "detail": <why>}``
with 400 (bad input, naming the field), 401 (not logged in), 403 (not staff,
or the CSRF check failed), 404 (no such job, action or path), 405.
Bodies are decoded straight into the typed structs below (msgspec): a missing
or mistyped field is refused before anything is written or published, and a
body nested a million deep is a 400 like any other wrong shape.
"""

from __future__ import annotations

import re
from functools import wraps
from typing import Annotated, Literal, get_args, get_type_hints

import msgspec
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http import JsonResponse

from workers.envelope import InvalidEvent

from .events import publish_event
from .models import Job, Notification

# Primary keys: positive and within a 64-bit column on every database.
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """A request body: unknown fields are refused, like the envelope's."""


class NewJob(Body):
    client_id: Id
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Accept(Body):
    cleaner_id: Id


class NoFields(Body):
    pass


class NewPayment(Body):
    payment_id: str
    job_id: Id
    amount: str
    currency: str
    status: Literal["succeeded", "failed", "refunded"]
    reason: str | None = None


class ChatMessage(Body):
    sender_id: Id
    recipient_id: Id
    text: str
    job_id: Id | None = None


class NewNotification(Body):
    user_id: Id
    title: str
    message: str
    kind: str | None = None


JOB_ACTIONS = {"accept": ("job.accepted", Accept), "complete": ("job.completed", NoFields),
               "cancel": ("job.cancelled", NoFields)}


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


_MISSING = re.compile(r"Object missing required field `(\w+)`(?: - at `\$(.*)`)?")
_AT = re.compile(r"^(.*) - at `\$\.?(.*)`$")


def _explain(exc: msgspec.ValidationError, type_) -> str:
    """msgspec's message, phrased for the caller: "client_id is required",
    "client_id: Expected `int`, got `str`", "status must be one of ..."."""
    text = str(exc)
    missing = _MISSING.fullmatch(text)
    if missing:
        return f"{missing.group(1)} is required"
    at = _AT.match(text)
    if not at:
        return text
    problem, field = at.groups()
    choices = get_args(get_type_hints(type_).get(field))
    if problem.startswith("Invalid enum value") and choices:
        return f"{field} must be one of {', '.join(choices)}"
    return f"{field}: {problem}"


def decode(request, type_):
    """The body as ``type_``; an empty body is ``{}``."""
    try:
        return msgspec.json.decode(request.body or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "bad_request", _explain(exc, type_)) from None
    except msgspec.DecodeError:
        raise ApiError(400, "not_json", "the body is not JSON") from None


def fields(body: Body) -> dict:
    """The struct as event data, optional fields left out when not given."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}


def _must_exist(model, pk: int, field: str) -> None:
    if not model.objects.filter(pk=pk).exists():
        raise ApiError(400, "bad_reference", f"{field}: no {model._meta.verbose_name} with id {pk}")


def staff_json(*methods: str):
    """Staff session required; errors answered as JSON; one place for them all."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                response = error(405, "method_not_allowed", f"use {' or '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            if not request.user.is_authenticated:
                return error(401, "not_logged_in", "log in as a staff user (/admin/)")
            if not request.user.is_staff:
                return error(403, "not_staff", "log in as a staff user (/admin/)")
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.error, exc.detail)
            except InvalidEvent as exc:
                return error(400, exc.reason, exc.detail)
            except IntegrityError as exc:  # a row deleted between the check and the write
                return error(400, "bad_reference", str(exc))

        return wrapper

    return decorate


def _published(event_id: str, **extra) -> JsonResponse:
    return JsonResponse({"event_id": event_id, **extra}, status=202)


@staff_json("POST")
def create_job(request):
    body = decode(request, NewJob)
    _must_exist(get_user_model(), body.client_id, "client_id")
    with transaction.atomic():
        job = Job.objects.create(client_id=body.client_id, title=body.title)
        event_id = publish_event("jobs", "job.created", {"job_id": job.pk})
    return _published(event_id, job_id=job.pk)


@staff_json("POST")
def job_action(request, job_id: int, action: str):
    if action not in JOB_ACTIONS:
        raise ApiError(404, "not_found", f"no job action {action!r}; one of {', '.join(JOB_ACTIONS)}")
    if not Job.objects.filter(pk=job_id).exists():
        raise ApiError(404, "not_found", f"no job with id {job_id}")
    event_type, struct = JOB_ACTIONS[action]
    body = decode(request, struct)
    if isinstance(body, Accept):
        _must_exist(get_user_model(), body.cleaner_id, "cleaner_id")
    return _published(publish_event("jobs", event_type, {"job_id": job_id, **fields(body)}))


@staff_json("POST")
def payment(request):
    body = decode(request, NewPayment)
    _must_exist(Job, body.job_id, "job_id")
    data = fields(body)
    status = data.pop("status")
    return _published(publish_event("payments", f"payment.{status}", data))


@staff_json("POST")
def chat(request):
    body = decode(request, ChatMessage)
    for field in ("sender_id", "recipient_id"):
        _must_exist(get_user_model(), getattr(body, field), field)
    if body.job_id is not None:
        _must_exist(Job, body.job_id, "job_id")
    return _published(publish_event("chat", "chat.message", fields(body)))


@staff_json("GET", "POST")
def notifications(request):
    if request.method == "POST":
        body = decode(request, NewNotification)
        _must_exist(get_user_model(), body.user_id, "user_id")
        return _published(publish_event("notifications", "notification.created", fields(body)))
    try:
        user_id = msgspec.convert(request.GET.get("user_id"), Id, strict=False)
    except msgspec.ValidationError:
        raise ApiError(400, "bad_request", "user_id: a user id is required (?user_id=N)") from None
    rows = Notification.objects.filter(user_id=user_id)[:50]
    return JsonResponse({"notifications": [
        {"title": n.title, "message": n.message, "kind": n.kind, "event_id": str(n.event_id),
         "created_at": n.created_at.isoformat(), "read": n.read} for n in rows]})


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return error(403, "csrf_failed", f"CSRF check failed ({reason}); send the csrftoken cookie's value "
                                         "as the X-CSRFToken header")
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason)
