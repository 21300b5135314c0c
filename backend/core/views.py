from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.views.decorators.http import require_GET

from e_clean_backend import redis_config


@require_GET
def healthz(request):
    """200 only when the database and Redis both answer: the web can publish."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - report any failure, do not raise
        checks["database"] = f"error: {type(exc).__name__}"
    client = redis_config.client(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {type(exc).__name__}"
    finally:
        client.close()
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ok else "unhealthy", **checks}, status=200 if ok else 503)


@require_GET
def home(request):
    """``/``: what this site has, linked (the admin's "View site" lands here)."""
    try:
        # The live notifications page, when this deployment has it.
        resolve("/notifications/")
        notifications_url = "/notifications/"
    except Resolver404:
        notifications_url = None
    try:
        admin_url = reverse("admin:index")
    except NoReverseMatch:
        admin_url = "/admin/"
    return render(request, "core/home.html", {"admin_url": admin_url, "notifications_url": notifications_url,
                                              "health_url": reverse("healthz")})


def not_found(request, exception=None):
    """handler404: JSON under /api/ (clients parse it), Django's page elsewhere
    (never the debug page's URL list: that one only exists with DEBUG on)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": f"no API endpoint {request.path}"}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):
    """handler500: JSON under /api/, Django's page elsewhere; the traceback
    goes to the log, never to the caller."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "server_error", "detail": "see the web process's log"}, status=500)
    from django.views.defaults import server_error as django_server_error

    return django_server_error(request)
