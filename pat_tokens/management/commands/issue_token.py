"""Issue a token pair for a user and print it once."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from pat_tokens import services
from pat_tokens.serializers import token_response_data


class Command(BaseCommand):
    help = (
        "Issue an access token and a refresh token for a user and print them. The tokens are "
        "not stored in plaintext and cannot be shown again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "username", help="The user's USERNAME_FIELD value, as they would log in with it."
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the token response of POST /auth/token/ as JSON instead of text.",
        )

    def handle(self, *args, **options):
        user = self.get_user(options["username"])
        pair = services.issue_pair(user)
        data = token_response_data(pair)

        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
        elif options["verbosity"] == 0:
            self.stdout.write(data["access_token"])
            self.stdout.write(data["refresh_token"])
        else:
            self.write_text(user, pair, data)

    def get_user(self, username):
        user_model = get_user_model()
        field = user_model.USERNAME_FIELD
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user with {field} {username!r} exists.") from None
        if not getattr(user, "is_active", True):
            raise CommandError(
                f"The user with {field} {username!r} is inactive; activate the account first."
            )
        return user

    def write_text(self, user, pair, data):
        self.stdout.write(f"Issued session {pair.token.pk} for {user.get_username()}.")
        self.stdout.write(f"Access token:  {data['access_token']}")
        self.stdout.write(f"  expires at {data['access_token_expires_at']}")
        self.stdout.write(f"Refresh token: {data['refresh_token']}")
        self.stdout.write(f"  expires at {data['refresh_token_expires_at']}")
        self.stdout.write("Store both tokens now: they cannot be shown again.")
