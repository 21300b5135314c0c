import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo admin, client and cleaner for `make run` (idempotent)."

    def handle(self, *args, **options):
        User = get_user_model()
        password = os.environ.get("DEMO_ADMIN_PASSWORD")
        if not password:
            self.stderr.write("DEMO_ADMIN_PASSWORD is not set; the admin user is not created")
        else:
            admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
            admin.set_password(password)
            admin.save()
        for name in ("client", "cleaner"):
            user, created = User.objects.get_or_create(username=name)
            if created:
                user.set_unusable_password()
                user.save()
            self.stdout.write(f"{name}: id {user.pk}")
