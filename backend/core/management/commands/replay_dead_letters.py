from django.core.management.base import BaseCommand

from core.deadletters import replay
from core.models import DeadLetter


class Command(BaseCommand):
    help = "Re-enqueue dead letters (valid ones); each still has its effect once."

    def add_arguments(self, parser):
        parser.add_argument("--topic", help="only this topic")
        parser.add_argument("--id", dest="event_id", help="only this event id")
        parser.add_argument("--all", action="store_true", help="include dead letters replayed before")
        parser.add_argument("--dry-run", action="store_true", help="list what would be replayed, change nothing")

    def handle(self, *args, topic=None, event_id=None, all=False, dry_run=False, **options):
        letters = DeadLetter.objects.all()
        if topic:
            letters = letters.filter(topic=topic)
        if event_id:
            letters = letters.filter(event_id=event_id)
        if not all and not event_id:
            letters = letters.filter(replayed_at__isnull=True)
        report = replay(letters, dry_run=dry_run)
        verb = "would replay" if dry_run else "replayed"
        for letter in report.replayed:
            self.stdout.write(f"{verb} {letter.topic} {letter.event_type} {letter.event_id} (dead letter {letter.pk})")
        for letter, why in report.still_invalid:
            self.stdout.write(f"still invalid: dead letter {letter.pk} on {letter.topic}: {why}")
        self.stdout.write(("dry run: " if dry_run else "") + report.summary())
