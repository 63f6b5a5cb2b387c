"""``manage.py instructor <username>``: an instructor (made if needed) and an API token."""

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError, CommandParser

from workshops.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make <username> an instructor (creating the user if needed) and print a new API "
        "token for Authorization: Token <token>. Only the token's hash is stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--password",
            default=None,
            help="set this password (default: keep it; a new user gets a random one, printed)",
        )
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"].strip()
        if not username or len(username) > 150:
            raise CommandError("give a user name of 1 to 150 characters")
        users = get_user_model()
        user, created = users.objects.get_or_create(
            username=username, defaults={"email": options["email"]}
        )
        password = options["password"]
        if created and password is None:
            password = secrets.token_urlsafe(12)
            self.stderr.write(f"created {username}; password: {password}")
        elif created:
            self.stderr.write(f"created {username}")
        if password is not None:
            user.set_password(password)
            user.save()
        permission = Permission.objects.get(
            content_type__app_label="workshops", codename="instruct"
        )
        user.user_permissions.add(permission)
        self.stdout.write(ApiToken.issue(user))
