"""Settings for the test suite.

``DATABASE_URL`` selects the database (SQLite in memory by default). ``PAT_TEST_USER_MODEL=int``
swaps the example project's UUID-keyed user for ``tests.intuser.IntUser``, whose integer key is
named ``uid``. ``PAT_TEST_USE_TZ=0`` turns ``USE_TZ`` off.
"""

import os

import dj_database_url

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

USER_MODEL_VARIANT = os.environ.get("PAT_TEST_USER_MODEL", "uuid")
if USER_MODEL_VARIANT not in ("uuid", "int"):
    raise RuntimeError(f"PAT_TEST_USER_MODEL must be 'uuid' or 'int', not {USER_MODEL_VARIANT!r}")
USER_APP = "accounts" if USER_MODEL_VARIANT == "uuid" else "tests.intuser"
AUTH_USER_MODEL = "accounts.User" if USER_MODEL_VARIANT == "uuid" else "intuser.IntUser"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "pat_tokens",
    USER_APP,
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pat_tokens.middleware.PersonalAccessTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(os.environ.get("DATABASE_URL") or "sqlite://:memory:")
}
DATABASE_VENDOR = DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
if DATABASE_VENDOR != "sqlite3":
    # One test database per pytest process, so parallel runs on one server do not collide. A
    # child process started by a test finds the parent's database through PAT_TEST_DB_NAME.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("PAT_TEST_DB_NAME")
        or f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
    }
if DATABASE_VENDOR == "sqlite3":
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    # A file, not memory: the concurrency tests open one connection per thread.
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("PAT_TEST_SQLITE_NAME")}
elif DATABASE_VENDOR == "mysql":
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
    isolation = os.environ.get("PAT_TEST_MYSQL_ISOLATION")
    if isolation:
        DATABASES["default"]["OPTIONS"]["isolation_level"] = isolation

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "tokens": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tokens"},
    "redis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("PAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        "KEY_PREFIX": f"pat-tests-{os.getpid()}",
    },
}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# PAT_TEST_USE_TZ=0 runs the suite with naive datetimes in a zone far from UTC.
USE_TZ = os.environ.get("PAT_TEST_USE_TZ", "1") == "1"
TIME_ZONE = "UTC" if USE_TZ else "America/Chicago"
if DATABASE_VENDOR == "mysql" and not USE_TZ:
    # MySQL's CURRENT_TIMESTAMP follows the session time zone; it must match TIME_ZONE.
    DATABASES["default"]["OPTIONS"]["init_command"] = f"SET time_zone = '{TIME_ZONE}'"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pat_tokens.authentication.PersonalAccessTokenAuthentication"
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

PAT_TOKENS = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"pat_tokens": {"level": "DEBUG"}},
}
