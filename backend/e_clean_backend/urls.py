from django.contrib import admin
from django.urls import path

from core import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("api/jobs", api.create_job),
    path("api/jobs/<int:job_id>/<str:action>", api.job_action),
    path("api/payments", api.payment),
    path("api/chat", api.chat),
    path("api/notifications", api.notifications),
]

# JSON errors under /api/, Django's pages elsewhere (core/views.py).
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
