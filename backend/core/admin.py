from django.contrib import admin, messages
from django.db import transaction

from .deadletters import replay
from .events import publish_event
from .models import DeadLetter, Job, Notification, Payment, ProcessedEvent


def _publish_for(modeladmin, request, queryset, event_type, extra=lambda job: {}):
    with transaction.atomic():
        for job in queryset:
            publish_event("jobs", event_type, {"job_id": job.pk, **extra(job)})
    modeladmin.message_user(request, f"{queryset.count()} {event_type} event(s) published after commit")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "client", "cleaner", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("title",)
    actions = ["accept", "complete", "cancel"]

    def save_model(self, request, obj, form, change):
        creating = obj.pk is None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if creating:
                publish_event("jobs", "job.created", {"job_id": obj.pk})

    @admin.action(description="Publish job.accepted (by the job's cleaner)")
    def accept(self, request, queryset):
        without = queryset.filter(cleaner__isnull=True)
        if without.exists():
            self.message_user(request, "Pick a cleaner on each job first", messages.ERROR)
            return
        _publish_for(self, request, queryset, "job.accepted", lambda job: {"cleaner_id": job.cleaner_id})

    @admin.action(description="Publish job.completed")
    def complete(self, request, queryset):
        _publish_for(self, request, queryset, "job.completed")

    @admin.action(description="Publish job.cancelled")
    def cancel(self, request, queryset):
        _publish_for(self, request, queryset, "job.cancelled")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    list_display = ("reference", "job", "amount", "currency", "status", "updated_at")
    list_filter = ("status", "currency")
    search_fields = ("reference",)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "kind", "title", "read", "event_id")
    list_filter = ("kind", "read")
    search_fields = ("event_id", "title", "user__username")


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(admin.ModelAdmin):
    list_display = ("handled_at", "topic", "type", "event_id", "attempts")
    list_filter = ("topic", "type")
    search_fields = ("event_id",)


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("created_at", "topic", "stage", "reason", "event_type", "event_id", "attempts", "replayed_at")
    list_filter = ("topic", "stage", "reason", ("replayed_at", admin.EmptyFieldListFilter))
    search_fields = ("event_id", "detail")
    readonly_fields = [f.name for f in DeadLetter._meta.fields]
    actions = ["replay_selected"]

    @admin.action(description="Replay selected dead letters")
    def replay_selected(self, request, queryset):
        report = replay(queryset)
        level = messages.WARNING if report.still_invalid else messages.SUCCESS
        self.message_user(request, report.summary(), level)
