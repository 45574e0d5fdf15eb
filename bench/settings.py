"""Django settings for the benchmarks in ``bench/``.

``BENCH_DB`` selects the database: ``mysql`` (MariaDB or MySQL at ``BENCH_MYSQL_URL``, default
``mysql://root@127.0.0.1:3306/pat_bench``) or ``sqlite`` (a file under ``bench/results/raw/``).
``BENCH_PAT_CACHE`` selects the cache of ``PersonalAccessTokenAuthentication`` for processes that
cannot switch it per request (gunicorn): ``none``, ``locmem`` or ``redis``.

The user model is the example project's ``accounts.User`` (UUID primary key ``user_id``, table
``users``) for every scheme, so that all of them join or fetch the same kind of user row.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url

BENCH_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = BENCH_DIR.parent
RAW_DIR = BENCH_DIR / "results" / "raw"

# The user model lives in the example project, which is not an installed package.
if str(REPOSITORY_DIR / "example_project") not in sys.path:
    sys.path.insert(0, str(REPOSITORY_DIR / "example_project"))

SECRET_KEY = "bench-only-secret-key-not-for-production-use"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework.authtoken",
    "knox",
    "pat_tokens",
    "accounts",
]

# No middleware: the requests measure the view and its authentication class only.
MIDDLEWARE = []
ROOT_URLCONF = "bench.urls"
WSGI_APPLICATION = "bench.wsgi.application"

BENCH_DB = os.environ.get("BENCH_DB", "mysql")
if BENCH_DB == "mysql":
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ.get("BENCH_MYSQL_URL", "mysql://root@127.0.0.1:3306/pat_bench"),
            conn_max_age=600,
        )
    }
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
elif BENCH_DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(RAW_DIR / "pat_bench.sqlite3"),
            "CONN_MAX_AGE": 600,
        }
    }
else:
    raise RuntimeError(f"BENCH_DB must be 'mysql' or 'sqlite', not {BENCH_DB!r}")

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "tokens-locmem": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "tokens",
        "OPTIONS": {"MAX_ENTRIES": 200_000},
    },
    "tokens-redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "pat-bench",
    },
}

# A timeout longer than a benchmark run, so that every timed request after the warm-up is a hit.
CACHE_TIMEOUT = timedelta(hours=2)
PAT_CACHE_ALIASES = {"none": None, "locmem": "tokens-locmem", "redis": "tokens-redis"}
PAT_TOKENS = {
    "CACHE_ALIAS": PAT_CACHE_ALIASES[os.environ.get("BENCH_PAT_CACHE", "none")],
    "CACHE_TIMEOUT": CACHE_TIMEOUT,
}

AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
}

SIMPLE_JWT = {
    "USER_ID_FIELD": "user_id",
    "ACCESS_TOKEN_LIFETIME": timedelta(days=1),
    "SIGNING_KEY": SECRET_KEY,
}

REST_KNOX = {"TOKEN_TTL": timedelta(days=1)}

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"pat_tokens": {"level": "WARNING"}},
}
