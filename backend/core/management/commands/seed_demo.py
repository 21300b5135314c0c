import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

# user name -> (the variable holding its password, staff/superuser)
DEMO_USERS = {
    "admin": ("DEMO_ADMIN_PASSWORD", True),
    "client": ("DEMO_CLIENT_PASSWORD", False),
    "cleaner": ("DEMO_CLEANER_PASSWORD", False),
}


class Command(BaseCommand):
    help = ("Create the demo users admin, client and cleaner for `make run` (idempotent); each gets the "
            "password in DEMO_<NAME>_PASSWORD, or none it can log in with when that is unset.")

    def handle(self, *args, **options):
        User = get_user_model()
        for name, (variable, superuser) in DEMO_USERS.items():
            password = os.environ.get(variable)
            if superuser and not password:
                self.stderr.write(f"{variable} is not set; the {name} user is not created")
                continue
            user, _ = User.objects.get_or_create(username=name,
                                                 defaults={"is_staff": superuser, "is_superuser": superuser})
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
            self.stdout.write(f"{name}: id {user.pk}")
