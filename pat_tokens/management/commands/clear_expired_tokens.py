"""Delete sessions whose refresh token has expired."""

from django.core.management.base import BaseCommand, CommandError

from pat_tokens import cleanup

# At verbosity 1 a progress line is printed every this many batches.
PROGRESS_EVERY_BATCHES = 100


def _sessions(count):
    return "session" if count == 1 else "sessions"


class Command(BaseCommand):
    help = (
        "Delete the sessions whose refresh token has expired, in batches, each batch in its own "
        "short transaction. Sends no token_revoked signal. Run it from cron or a task scheduler."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=int,
            default=cleanup.DEFAULT_BATCH_SIZE,
            help=(
                "Rows to delete per statement and transaction (default: %(default)s). "
                "SQLite caps it at 998."
            ),
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the expired sessions with one query and delete nothing.",
        )

    def handle(self, *args, batch_size, dry_run, verbosity, **options):
        if batch_size < 1:
            raise CommandError(f"--batch-size must be a positive integer, not {batch_size}.")

        if dry_run:
            count = cleanup.count_expired()
            if verbosity >= 1:
                self.stdout.write(f"Would delete {count} expired {_sessions(count)} (dry run).")
            return

        batches = 0

        def report_progress(deleted, total):
            nonlocal batches
            batches += 1
            if verbosity >= 2 or (verbosity == 1 and batches % PROGRESS_EVERY_BATCHES == 0):
                self.stdout.write(f"Batch {batches}: deleted {deleted}, {total} so far.")

        total = cleanup.delete_expired(batch_size=batch_size, on_batch=report_progress)
        if verbosity >= 1:
            self.stdout.write(f"Deleted {total} expired {_sessions(total)}.")
