from django.conf import settings
from django.db import models


class Job(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs_as_client")
    cleaner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs_as_cleaner"
    )
    title = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"#{self.pk} {self.title} ({self.status})"


class Payment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REFUNDED = "refunded"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="payments")
    # The payment provider's reference: events name payments by it.
    reference = models.CharField(max_length=100, unique=True)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.reference} {self.amount} {self.currency} ({self.status})"


class Notification(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=50, db_index=True)
    title = models.CharField(max_length=200)
    message = models.TextField()
    # The event that caused it: one event notifies one user at most once.
    event_id = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event_id", "user"], name="one_notification_per_event_user")]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.user} {self.title}"


class ProcessedEvent(models.Model):
    """The "this event was handled" mark. Written in the same transaction as
    the event's effects, so a redelivered event finds it and does nothing."""

    event_id = models.UUIDField(primary_key=True)
    topic = models.CharField(max_length=20)
    type = models.CharField(max_length=50)
    # Deliveries it took, retries included (1 = first try).
    attempts = models.PositiveIntegerField(default=1)
    handled_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.type} {self.event_id}"


class DeadLetter(models.Model):
    """An event that could not be handled, kept with its reason for people to
    inspect and replay (``manage.py replay_dead_letters`` or the admin action)."""

    class Stage(models.TextChoices):
        PUBLISHER = "publisher", "could not be published"
        BRIDGE = "bridge", "rejected by the bridge"
        WORKER = "worker", "failed in a worker"

    topic = models.CharField(max_length=50, db_index=True)
    event_id = models.CharField(max_length=100, blank=True, db_index=True)
    event_type = models.CharField(max_length=100, blank=True)
    stage = models.CharField(max_length=10, choices=Stage.choices)
    reason = models.CharField(max_length=50, db_index=True)
    detail = models.TextField(blank=True)
    # The message as received, for replay. Non-UTF-8 bytes are kept escaped.
    payload = models.TextField()
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.topic} {self.reason} {self.event_id or '-'}"


class OutboxEvent(models.Model):
    """An event waiting to be published: the transactional outbox.

    :func:`core.events.publish_event` writes the row in the same transaction as
    the change the event describes, so the two commit (or roll back) together.
    Right after the commit the publisher sends it and deletes the row; if that
    fast path fails (Redis hung or down, the process killed in between), the
    bridge's relay (``workers/bridge/outbox.py``) publishes what is still here
    after ``EVENTS_OUTBOX_DELAY`` seconds. Publishing twice is harmless: the
    bridge claims event ids and handlers are idempotent on them.
    """

    event_id = models.UUIDField(primary_key=True)
    topic = models.CharField(max_length=20)
    type = models.CharField(max_length=50)
    payload = models.TextField()  # the envelope as JSON text, validated when written
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Relay attempts that failed, and the last reason, for people and metrics.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.type} {self.event_id}"
