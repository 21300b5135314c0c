import json

from django.core.management.base import BaseCommand, CommandError

from core.events import publish_event
from core.models import OutboxEvent
from workers.envelope import InvalidEvent


class Command(BaseCommand):
    help = "Publish one event through the project's publisher (outbox, journal, PUBLISH)."

    def add_arguments(self, parser):
        parser.add_argument("topic")
        parser.add_argument("type")
        parser.add_argument("data", help='JSON object, e.g. \'{"job_id": 1}\'')

    def handle(self, topic, type, data, **options):
        try:
            event_id = publish_event(topic, type, json.loads(data))
        except (ValueError, InvalidEvent) as exc:
            raise CommandError(str(exc)) from None
        # Outside a transaction the publish has already been tried; a row still
        # in the outbox means it failed (the reason is logged above).
        if OutboxEvent.objects.filter(pk=event_id).exists():
            raise CommandError(
                f"event {event_id} was NOT published: Redis did not take it (see the warning above). It is kept "
                "in the outbox; a running bridge publishes it once Redis answers.")
        self.stdout.write(event_id)
