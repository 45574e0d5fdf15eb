"""Create the benchmark database: 100,000 users, each with one token in every scheme's table.

Every user gets one DRF token (its table allows one a user), one knox token and one session of
this app, so each table holds 100,000 rows. The plaintext of a sample of them (``SAMPLE_SIZE``
users spread over the table) is written to ``bench/results/raw/<db>-tokens.json`` for the timed
requests; simplejwt keeps no table, and its access tokens are minted when a run starts.

Run ``python -m bench.dataset`` with ``BENCH_DB`` set; ``--reuse`` keeps an existing dataset.
"""

import argparse
import binascii
import json
import os
import time
from datetime import datetime, timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from knox.crypto import create_token_string, hash_token  # noqa: E402
from knox.models import AuthToken  # noqa: E402
from knox.settings import CONSTANTS as KNOX_CONSTANTS  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from pat_tokens import tokens  # noqa: E402
from pat_tokens.models import PersonalAccessToken  # noqa: E402

USER_COUNT = 100_000
SAMPLE_SIZE = 256
BATCH_SIZE = 2_000
# The sample tokens expire a day after they are made; a dataset is reused for half of that.
MAX_REUSE_AGE = timedelta(hours=12)
PASSWORD = "bench-password"


def sample_path():
    return settings.RAW_DIR / f"{settings.BENCH_DB}-tokens.json"


def recreate_database():
    """Drop and create the benchmark database (MariaDB/MySQL) or delete the SQLite file."""
    settings.RAW_DIR.mkdir(parents=True, exist_ok=True)
    connection.close()
    if settings.BENCH_DB == "sqlite":
        path = settings.RAW_DIR / "pat_bench.sqlite3"
        for suffix in ("", "-journal", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return

    import MySQLdb

    options = settings.DATABASES["default"]
    server = MySQLdb.connect(
        host=options["HOST"],
        port=int(options["PORT"] or 3306),
        user=options["USER"],
        password=options["PASSWORD"] or "",
    )
    try:
        cursor = server.cursor()
        name = options["NAME"]
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        server.close()


def create_users(count):
    user_model = get_user_model()
    password = make_password(PASSWORD)
    users = [
        user_model(
            username=f"user{index:06d}", email=f"user{index:06d}@example.com", password=password
        )
        for index in range(count)
    ]
    user_model.objects.bulk_create(users, batch_size=BATCH_SIZE)
    return users


def create_drf_tokens(users):
    rows = [Token(key=binascii.hexlify(os.urandom(20)).decode(), user=user) for user in users]
    Token.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    return [row.key for row in rows]


def create_knox_tokens(users, now):
    plaintexts = []
    rows = []
    for user in users:
        token = create_token_string()
        plaintexts.append(token)
        rows.append(
            AuthToken(
                digest=hash_token(token),
                token_key=token[: KNOX_CONSTANTS.TOKEN_KEY_LENGTH],
                user=user,
                expiry=now + timedelta(days=1),
            )
        )
    AuthToken.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    return plaintexts


def create_sessions(users, now):
    """Insert one session of this app per user; return the plaintext access tokens."""
    plaintexts = []
    rows = []
    for user in users:
        access = tokens.generate(tokens.TokenKind.ACCESS)
        refresh = tokens.generate(tokens.TokenKind.REFRESH)
        plaintexts.append(access)
        rows.append(
            PersonalAccessToken(
                user=user,
                access_token=tokens.digest(access),
                refresh_token=tokens.digest(refresh),
                expires_access_token=now + timedelta(days=1),
                expires_refresh_token=now + timedelta(days=14),
                created_at=now,
            )
        )
    PersonalAccessToken.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    return plaintexts


def build(user_count=USER_COUNT):
    """Recreate the database and fill it; return the seconds it took."""
    started = time.perf_counter()
    recreate_database()
    call_command("migrate", verbosity=0)
    now = timezone.now()
    with transaction.atomic():
        users = create_users(user_count)
        drf = create_drf_tokens(users)
        knox = create_knox_tokens(users, now)
        pat = create_sessions(users, now)

    step = max(1, user_count // SAMPLE_SIZE)
    picked = list(range(0, user_count, step))[:SAMPLE_SIZE]
    sample = {
        "db": settings.BENCH_DB,
        "user_count": user_count,
        "created_at": now.isoformat(),
        "user_ids": [str(users[index].pk) for index in picked],
        "drf": [drf[index] for index in picked],
        "knox": [knox[index] for index in picked],
        "pat": [pat[index] for index in picked],
    }
    sample_path().write_text(json.dumps(sample, indent=1))
    if settings.BENCH_DB == "mysql":
        with connection.cursor() as cursor:
            for table in ("users", "authtoken_token", "knox_authtoken", "refresh_tokens"):
                cursor.execute(f"ANALYZE TABLE {table}")
                cursor.fetchall()
    return time.perf_counter() - started


def table_counts():
    return {
        "users": get_user_model().objects.count(),
        "authtoken_token": Token.objects.count(),
        "knox_authtoken": AuthToken.objects.count(),
        "refresh_tokens": PersonalAccessToken.objects.count(),
    }


def load_sample():
    """Return the sample tokens of the current database, with fresh simplejwt access tokens."""
    sample = json.loads(sample_path().read_text())
    users = get_user_model().objects.in_bulk(sample["user_ids"])
    sample["jwt"] = [str(AccessToken.for_user(users[pk])) for pk in _as_keys(sample["user_ids"])]
    return sample


def _as_keys(user_ids):
    field = get_user_model()._meta.pk
    return [field.to_python(user_id) for user_id in user_ids]


def is_ready(user_count=USER_COUNT):
    """Return whether a complete dataset exists whose tokens stay valid for a whole run."""
    if not sample_path().exists():
        return False
    created_at = datetime.fromisoformat(json.loads(sample_path().read_text())["created_at"])
    if timezone.now() - created_at > MAX_REUSE_AGE:
        return False
    try:
        counts = table_counts()
    except Exception:
        return False
    return all(count >= user_count for count in counts.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", action="store_true", help="keep a complete existing dataset")
    parser.add_argument("--users", type=int, default=USER_COUNT, help="number of users")
    options = parser.parse_args()

    if options.reuse and is_ready(options.users):
        print(f"{settings.BENCH_DB}: reusing the dataset: {table_counts()}")
        return
    seconds = build(options.users)
    print(f"{settings.BENCH_DB}: built the dataset in {seconds:.1f} s: {table_counts()}")


if __name__ == "__main__":
    main()
