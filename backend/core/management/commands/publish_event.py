import json

from django.core.management.base import BaseCommand, CommandError

from core.events import publish_event
from workers.envelope import InvalidEvent


class Command(BaseCommand):
    help = "Publish one event through the project's publisher (journaled)."

    def add_arguments(self, parser):
        parser.add_argument("topic")
        parser.add_argument("type")
        parser.add_argument("data", help='JSON object, e.g. \'{"job_id": 1}\'')

    def handle(self, topic, type, data, **options):
        try:
            event_id = publish_event(topic, type, json.loads(data))
        except (ValueError, InvalidEvent) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(event_id)
