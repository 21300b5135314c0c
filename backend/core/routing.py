"""WebSocket routes (HTTP routes are in ``e_clean_backend/urls.py``)."""

from django.urls import path

from .consumers import NotificationConsumer

websocket_urlpatterns = [
    path("ws/notifications/", NotificationConsumer.as_asgi()),
]
