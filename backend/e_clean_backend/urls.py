from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from core import api, pages, views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("api/jobs", api.create_job),
    path("api/jobs/<int:job_id>/<str:action>", api.job_action),
    path("api/payments", api.payment),
    path("api/chat", api.chat),
    path("api/notifications", api.notifications),
    # The live notifications page; its socket is /ws/notifications/ (core/routing.py, asgi.py).
    path("notifications/", pages.notifications_page, name="notifications"),
    path("login/", auth_views.LoginView.as_view(template_name="core/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]

# JSON errors under /api/, Django's pages elsewhere (core/views.py).
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
