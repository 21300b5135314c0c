"""The admin: a window on the pipeline that cannot bypass it.

A state the events own is read-only here: a job's status and cleaner change
through the actions, which publish the event (the worker applies it);
payments are recorded by payment events only; ``ProcessedEvent`` rows are the handlers' "applied" marks, and ``DeadLetter``
rows are written by the pipeline only. What an operator may still do is an
explicit action with a confirmation page.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.html import format_html

from .deadletters import replay
from .events import publish_event
from .models import DeadLetter, Job, Notification, Payment, ProcessedEvent


def _publish_for(modeladmin, request, queryset, event_type, extra=lambda job: {}):
    with transaction.atomic():
        for job in queryset:
            publish_event("jobs", event_type, {"job_id": job.pk, **extra(job)})
    modeladmin.message_user(request, f"{queryset.count()} {event_type} event(s) published after commit")


class AcceptForm(forms.Form):
    """The intermediate page of the *accept* action: who takes the jobs."""

    cleaner = forms.ModelChoiceField(queryset=get_user_model().objects.order_by("username"))


def _confirmation(modeladmin, request, queryset, template, title, **context):
    """An intermediate page that posts the same action back with ``apply`` set."""
    return TemplateResponse(request, template, {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "queryset": queryset,
        "action": request.POST.get("action"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        **context,
    })


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "client", "cleaner", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("title",)
    actions = ["accept", "complete", "cancel"]
    # The events own these: the actions below publish them, the worker applies them.
    readonly_fields = ("status", "cleaner")

    def get_fields(self, request, obj=None):
        # A new job is open with no cleaner; nothing to show for them yet.
        return ("client", "title") if obj is None else ("client", "title", "status", "cleaner")

    def save_model(self, request, obj, form, change):
        creating = obj.pk is None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if creating:
                publish_event("jobs", "job.created", {"job_id": obj.pk})

    @admin.action(description="Publish job.accepted (asks for the cleaner)")
    def accept(self, request, queryset):
        not_open = [job for job in queryset if job.status != Job.Status.OPEN]
        if not_open:
            self.message_user(request, "Only open jobs can be accepted: " + ", ".join(map(str, not_open)),
                              messages.ERROR)
            return None
        form = AcceptForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            cleaner = form.cleaned_data["cleaner"]
            own = [job for job in queryset if job.client_id == cleaner.pk]
            if own:
                form.add_error("cleaner", "A client cannot be the cleaner of their own job: "
                               + ", ".join(map(str, own)))
            else:
                _publish_for(self, request, queryset, "job.accepted", lambda job: {"cleaner_id": cleaner.pk})
                return None
        return _confirmation(self, request, queryset, "admin/core/job/accept.html",
                             "Who accepts these jobs?", form=form)

    @admin.action(description="Publish job.completed")
    def complete(self, request, queryset):
        _publish_for(self, request, queryset, "job.completed")

    @admin.action(description="Publish job.cancelled")
    def cancel(self, request, queryset):
        _publish_for(self, request, queryset, "job.cancelled")


@admin.register(Payment)
class PaymentAdmin(admin.ModelAdmin):
    """View only: payments are recorded by the payment events (the provider's
    word), never typed in."""

    list_display = ("reference", "job", "amount", "currency", "status", "updated_at")
    list_filter = ("status", "currency")
    search_fields = ("reference",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "kind", "title", "read", "event_id")
    list_filter = ("kind", "read")
    search_fields = ("event_id", "title", "user__username")


@admin.register(ProcessedEvent)
class ProcessedEventAdmin(admin.ModelAdmin):
    """View only: a hand-added mark would suppress its event forever, an
    edited one would lie. Forgetting marks (so a replayed event is applied
    again) is the explicit *forget* action, after a confirmation page."""

    list_display = ("handled_at", "topic", "type", "event_id", "attempts")
    list_filter = ("topic", "type")
    search_fields = ("event_id",)
    actions = ["forget"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # no delete button, no bulk delete: only the action below

    def has_forget_permission(self, request):
        return request.user.has_perm("core.delete_processedevent")

    @admin.action(description="Forget selected marks (the events may be applied again)",
                  permissions=["forget"])
    def forget(self, request, queryset):
        if request.POST.get("apply") == "yes":
            count = queryset.count()
            queryset.delete()
            self.message_user(request, f"{count} mark(s) forgotten: replaying those events applies them again")
            return None
        return _confirmation(self, request, queryset, "admin/core/processedevent/forget.html",
                             "Forget these marks?")


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Written by the pipeline only: no add, no edit. Replay is the action;
    deleting an inspected dead letter stays possible."""

    list_display = ("created_at", "topic", "stage", "reason", "event_type", "event_id", "attempts", "replayed_at")
    list_filter = ("topic", "stage", "reason", ("replayed_at", admin.EmptyFieldListFilter))
    search_fields = ("event_id", "detail")
    fields = ("topic", "stage", "reason", "event_type", "event_id", "detail_text", "payload_text",
              "traceback_text", "attempts", "created_at", "replayed_at", "replay_count")
    readonly_fields = fields
    actions = ["replay_selected"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="detail")
    def detail_text(self, obj):
        return _pre(obj.detail)

    @admin.display(description="payload")
    def payload_text(self, obj):
        return _pre(obj.payload)

    @admin.display(description="traceback")
    def traceback_text(self, obj):
        return _pre(obj.traceback)

    @admin.action(description="Replay selected dead letters")
    def replay_selected(self, request, queryset):
        report = replay(queryset)
        level = messages.WARNING if report.still_invalid else messages.SUCCESS
        self.message_user(request, report.summary(), level)


def _pre(text: str):
    """Multi-line text as it is: a traceback keeps its indentation (escaped)."""
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text) if text else "-"
