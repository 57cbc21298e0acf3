"""The first-run path without /admin/: one command creates the first owner and says how to log in."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_slug

from registry.tenancy.services import organization_owner_ensure


class Command(BaseCommand):
    help = ("Make USERNAME an owner of the organization --org, creating the organization and the user if "
            "needed, and print how to log in to the dashboard.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--org", required=True, help="the organization's slug (created if missing)")
        parser.add_argument("--org-name", default="", help="its display name, for a new organization")
        parser.add_argument("--password", default=None,
                            help="set this password; a new user without one gets a random one, printed once")
        parser.add_argument("--url", default="http://127.0.0.1:8000",
                            help="where the dashboard is served, for the printed instructions")

    def handle(self, *args, username: str, org: str, org_name: str, password: str | None, url: str,
               **options) -> None:
        try:
            validate_slug(org)
        except ValidationError as exc:
            raise CommandError(f"--org: {org!r} is not a slug (letters, digits, - and _)") from exc
        if not username.strip() or len(username) > 150:
            raise CommandError("username: 1 to 150 characters")
        if password is not None and not password:
            raise CommandError("--password: must not be empty")
        user, organization, generated = organization_owner_ensure(
            username=username, org_slug=org, org_name=org_name, password=password)
        login = f"{url.rstrip('/')}/login/"
        self.stdout.write(self.style.SUCCESS(f"{user.get_username()} is an owner of {organization.slug}."))
        if generated:
            self.stdout.write(f"Log in at {login} as {username} with the password {generated} "
                              "(shown once; change it with `manage.py changepassword`).")
        else:
            self.stdout.write(f"Log in at {login} as {username} with {'the password given' if password else 'their password'}.")
