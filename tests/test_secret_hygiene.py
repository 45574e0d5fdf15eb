"""Plaintext tokens exist only in the response that issues them.

These tests look for every plaintext token a flow handled, whole or as any 20-character slice, in
the places where secrets usually leak: Django's error pages and error reports, the logs, every
column of every table, the admin, and the SQL sent to the database.

Django's error reports differ with ``DEBUG``:

- ``DEBUG=True`` renders the technical 500 page. Django hides request headers whose name matches
  ``API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE``, so ``HTTP_AUTHORIZATION`` is hidden,
  but by design it shows POST data and local variables in full, whatever the view declares.
- ``DEBUG=False`` sends the same report to ``ADMINS`` (``AdminEmailHandler``). There
  ``sensitive_post_parameters`` and ``sensitive_variables`` hide what the views and services mark.
"""

import re
import sys

import pytest
from django.apps import apps
from django.core.cache import caches
from django.db import OperationalError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter
from rest_framework.test import APIClient
from rest_framework.views import APIView

from pat_tokens import services, tokens
from pat_tokens.models import PersonalAccessToken

from .conftest import bearer
from .factories import PASSWORD, UserFactory
from .urls import urlpatterns as base_urlpatterns

SLICE_LENGTH = 20


class FailingView(APIView):
    """A host view that fails after the request was authenticated."""

    def get(self, request):
        raise RuntimeError("the view failed after authentication")

    post = get


def failing_plain_view(request):
    raise RuntimeError("the view failed after authentication")


urlpatterns = [
    *base_urlpatterns,
    path("failing/", FailingView.as_view()),
    path("plain/failing/", failing_plain_view),
    path("again/", include("pat_tokens.urls")),
]

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture(autouse=True)
def fresh_throttle_history():
    """Start from an empty default cache, where the token views count requests for throttling."""
    caches["default"].clear()


def secret_pieces(*secrets):
    """Return every secret and every SLICE_LENGTH-character slice of it."""
    pieces = set()
    for secret in secrets:
        pieces.add(secret)
        pieces.update(secret[i : i + SLICE_LENGTH] for i in range(len(secret) - SLICE_LENGTH + 1))
    return pieces


def leaks(text, secrets):
    """Return the pieces of ``secrets`` found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return sorted(piece for piece in secret_pieces(*secrets) if piece in text)


def fail_every_query(execute, sql, params, many, context):
    raise OperationalError("database unavailable (raised by the test)")


@pytest.fixture
def debug_client(settings):
    settings.DEBUG = True
    return APIClient(raise_request_exception=False)


# Django's technical 500 page (DEBUG=True).


@pytest.mark.parametrize("path", ["/failing/", "/plain/failing/"])
@pytest.mark.parametrize("method", ["get", "post"])
def test_debug_page_after_authentication(debug_client, pair, path, method, caplog):
    caplog.set_level("DEBUG")

    response = getattr(debug_client, method)(path, **bearer(pair.access_token))

    assert response.status_code == 500
    assert b"the view failed after authentication" in response.content
    assert b"HTTP_AUTHORIZATION" in response.content
    secrets = [pair.access_token, pair.refresh_token]
    assert leaks(response.content, secrets) == []
    assert leaks(caplog.text, secrets) == []


def test_debug_filter_hides_authorization_header(rf, settings):
    """The technical page's request headers go through the default filter's name pattern."""
    settings.DEBUG = True
    request = rf.get("/", HTTP_AUTHORIZATION="Bearer pat_secret", HTTP_X_API_KEY="k")

    meta = SafeExceptionReporterFilter().get_safe_request_meta(request)

    assert meta["HTTP_AUTHORIZATION"] == SafeExceptionReporterFilter.cleansed_substitute
    assert meta["HTTP_X_API_KEY"] == SafeExceptionReporterFilter.cleansed_substitute


# The error report that DEBUG=False sends to ADMINS.


def error_reporter(settings, send):
    """Run ``send`` with every query failing; return the error reporter of the exception."""
    settings.DEBUG = False
    captured = {}

    def capture(sender, request, **kwargs):
        captured["request"] = request
        captured["exc_info"] = sys.exc_info()

    from django.core.signals import got_request_exception

    got_request_exception.connect(capture, dispatch_uid="secret-hygiene")
    try:
        with connection.execute_wrapper(fail_every_query):
            response = send(APIClient(raise_request_exception=False))
    finally:
        got_request_exception.disconnect(dispatch_uid="secret-hygiene")

    assert response.status_code == 500
    return ExceptionReporter(captured["request"], *captured["exc_info"], is_email=True)


def error_report(settings, send):
    """Return the HTML and text reports that ADMINS would get for ``send`` failing."""
    reporter = error_reporter(settings, send)
    return reporter.get_traceback_html() + reporter.get_traceback_text()


@pytest.mark.parametrize("content_type", ["json", "form"])
def test_report_of_failed_refresh(settings, pair, content_type):
    data = {"refresh_token": pair.refresh_token}
    if content_type == "json":
        send = lambda client: client.post("/auth/token/refresh/", data, format="json")  # noqa: E731
    else:
        send = lambda client: client.post("/auth/token/refresh/", data)  # noqa: E731

    report = error_report(settings, send)

    assert "refresh_token" in report
    assert leaks(report, [pair.refresh_token, pair.access_token]) == []


@pytest.mark.parametrize("content_type", ["json", "form"])
def test_report_of_failed_obtain(settings, alice, content_type):
    """The password is hidden in the body and in this app's frames.

    NOTE: Django's ``ModelBackend.authenticate`` frame still shows it: only the ``credentials``
    variable of ``django.contrib.auth.authenticate()`` is marked sensitive (Django 5.2), which
    affects every login view whose user lookup fails, Django's own included.
    """
    data = {"username": "alice", "password": PASSWORD}
    extra = {"format": "json"} if content_type == "json" else {}

    reporter = error_reporter(settings, lambda client: client.post("/auth/token/", data, **extra))

    post = reporter.filter.get_post_parameters(reporter.request)
    assert leaks(repr(dict(post)), [PASSWORD]) == []
    app_frames = [
        frame for frame in reporter.get_traceback_frames() if "/pat_tokens/" in frame["filename"]
    ]
    assert app_frames
    for frame in app_frames:
        assert leaks(repr(frame["vars"]), [PASSWORD]) == [], frame["function"]


@pytest.mark.parametrize("path", ["/api/me/", "/plain/me/", "/auth/sessions/"])
def test_report_of_failed_authentication(settings, pair, path):
    report = error_report(settings, lambda client: client.get(path, **bearer(pair.access_token)))

    assert "OperationalError" in report
    assert leaks(report, [pair.access_token, pair.refresh_token]) == []


@pytest.mark.django_db(transaction=True)
def test_report_of_refresh_failing_after_issue(settings, alice):
    """A failure after new tokens were generated does not show them either."""
    pair = services.issue_pair(alice)
    settings.DEBUG = False
    generated = []
    captured = {}
    original_generate = tokens.generate

    def remember(kind):
        token = original_generate(kind)
        generated.append(token)
        return token

    def fail_update(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("UPDATE"):
            raise OperationalError("the update failed (raised by the test)")
        return execute(sql, params, many, context)

    def capture(sender, request, **kwargs):
        captured["request"] = request
        captured["exc_info"] = sys.exc_info()

    from django.core.signals import got_request_exception

    got_request_exception.connect(capture, dispatch_uid="secret-hygiene")
    tokens.generate = remember
    try:
        with connection.execute_wrapper(fail_update):
            response = APIClient(raise_request_exception=False).post(
                "/auth/token/refresh/", {"refresh_token": pair.refresh_token}
            )
    finally:
        tokens.generate = original_generate
        got_request_exception.disconnect(dispatch_uid="secret-hygiene")

    assert response.status_code == 500
    assert len(generated) == 2
    reporter = ExceptionReporter(captured["request"], *captured["exc_info"], is_email=True)
    report = reporter.get_traceback_html() + reporter.get_traceback_text()
    assert "the update failed" in report
    assert leaks(report, [pair.refresh_token, pair.access_token, *generated]) == []


# Logs, tables and the admin after a whole session's life.


def every_stored_text():
    """Yield (table, column, text) for every text or bytes value in every table."""
    introspection = connection.introspection
    with connection.cursor() as cursor:
        for table in introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, memoryview):
                        value = value.tobytes()
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        yield table, column, value


def test_no_plaintext_stored_or_logged(caplog, alice, settings):
    settings.PAT_TOKENS = {"CACHE_ALIAS": "tokens"}
    caplog.set_level("DEBUG")
    client = APIClient()
    issued = []

    first = client.post("/auth/token/", {"username": "alice", "password": PASSWORD}).json()
    second = client.post(
        "/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    ).json()
    issued += [first["access_token"], first["refresh_token"]]
    issued += [second["access_token"], second["refresh_token"]]
    assert client.get("/api/me/", **bearer(first["access_token"])).status_code == 200
    assert client.get("/plain/me/", **bearer(first["access_token"])).status_code == 200
    refreshed = client.post("/auth/token/refresh/", {"refresh_token": first["refresh_token"]})
    issued += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
    current = refreshed.json()["access_token"]
    assert client.get("/api/me/", **bearer(first["access_token"])).status_code == 401
    assert client.get("/auth/sessions/", **bearer(current)).status_code == 200
    assert client.post("/auth/token/revoke/", **bearer(second["access_token"])).status_code == 204
    assert client.get("/api/me/", **bearer(second["access_token"])).status_code == 401

    assert leaks(caplog.text, issued) == []
    for record in caplog.records:
        assert leaks(repr(record.args), issued) == []
    stored = [(table, column) for table, column, text in every_stored_text() if leaks(text, issued)]
    assert stored == []
    # The rows hold digests, so the scan did read the session table.
    digests = {text for _, column, text in every_stored_text() if column == "access_token"}
    assert tokens.digest(current) in digests


def test_admin_pages_show_no_plaintext(alice):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    operator = Client()
    operator.force_login(superuser)
    pair = services.issue_pair(alice)
    secrets = [pair.access_token, pair.refresh_token]
    model = apps.get_model("pat_tokens", "PersonalAccessToken")
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"

    pages = [
        operator.get(base),
        operator.get(f"{base}?q=alice"),
        operator.get(f"{base}{pair.token.pk}/change/"),
        operator.get(f"{base}{pair.token.pk}/delete/"),
        operator.get(f"{base}{pair.token.pk}/history/"),
    ]

    for page in pages:
        assert page.status_code == 200
        assert leaks(page.content, secrets) == []
    digest = tokens.digest(pair.access_token)
    assert digest not in pages[2].content.decode()


# The database compares digests; the plaintext never reaches it.


def sql_of(queries):
    return [query["sql"] for query in queries.captured_queries]


def digest_compared(sqls, column, digest):
    pattern = re.compile(rf"{column}[`\"]?\s*=\s*'?{digest}'?")
    return [sql for sql in sqls if pattern.search(sql)]


def test_queries_compare_digests(api_client, alice):
    with CaptureQueriesContext(connection) as obtain_queries:
        body = api_client.post("/auth/token/", {"username": "alice", "password": PASSWORD}).json()
    access, refresh = body["access_token"], body["refresh_token"]

    with CaptureQueriesContext(connection) as auth_queries:
        assert api_client.get("/api/me/", **bearer(access)).status_code == 200
    with CaptureQueriesContext(connection) as refresh_queries:
        refreshed = api_client.post("/auth/token/refresh/", {"refresh_token": refresh}).json()
    with CaptureQueriesContext(connection) as revoke_queries:
        response = api_client.post("/auth/token/revoke/", **bearer(refreshed["access_token"]))
        assert response.status_code == 204

    assert len(auth_queries) == 1
    assert digest_compared(sql_of(auth_queries), "access_token", tokens.digest(access))
    assert digest_compared(sql_of(refresh_queries), "refresh_token", tokens.digest(refresh))
    assert digest_compared(
        sql_of(revoke_queries), "access_token", tokens.digest(refreshed["access_token"])
    )
    secrets = [access, refresh, refreshed["access_token"], refreshed["refresh_token"]]
    every_query = [
        *sql_of(obtain_queries),
        *sql_of(auth_queries),
        *sql_of(refresh_queries),
        *sql_of(revoke_queries),
    ]
    assert [sql for sql in every_query if leaks(sql, secrets)] == []
    assert PersonalAccessToken.objects.count() == 0


@pytest.mark.parametrize("service", ["issue", "refresh"])
def test_report_of_service_failure(settings, alice, service):
    """The admin and the commands call the services directly, outside the views' protection."""
    settings.DEBUG = False
    pair = services.issue_pair(alice)
    generated = []
    original_generate = tokens.generate

    def remember(kind):
        generated.append(original_generate(kind))
        return generated[-1]

    def fail_writes(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            raise OperationalError("the write failed (raised by the test)")
        return execute(sql, params, many, context)

    tokens.generate = remember
    try:
        with connection.execute_wrapper(fail_writes), pytest.raises(OperationalError) as raised:
            if service == "issue":
                services.issue_pair(alice)
            else:
                services.refresh_pair(pair.refresh_token)
    finally:
        tokens.generate = original_generate

    assert generated
    # The report starts at the service: this test's own frame holds the plaintext it compares.
    error = raised.value
    traceback = error.__traceback__
    while "/pat_tokens/" not in traceback.tb_frame.f_code.co_filename:
        traceback = traceback.tb_next
    reporter = ExceptionReporter(None, type(error), error, traceback)
    report = reporter.get_traceback_html() + reporter.get_traceback_text()
    assert "the write failed" in report
    assert leaks(report, [pair.access_token, pair.refresh_token, *generated]) == []
