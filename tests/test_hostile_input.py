"""Hostile and malformed input: generated requests, oversized headers and bodies, odd encodings.

The generated requests come from schemathesis, driven by the OpenAPI schema that drf-spectacular
builds for the app. Each operation gets a bounded number of positive examples (valid by the
schema) and negative ones (made to break it), sent through Django's WSGI handler in process.
Every response must come from the app without a server error; every documented one must match its
schema; every 4xx body from the app's views carries ``code``.
"""

import collections
import io
import json
import socket

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core import signals
from django.core.cache import caches
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pat_tokens import services
from pat_tokens.headers import MAX_HEADER_LENGTH

from .conftest import bearer
from .factories import PASSWORD, UserFactory

urlpatterns = [path("auth/", include("pat_tokens.urls"))]

EXAMPLES_PER_OPERATION_AND_MODE = 50
POST_PATHS = [
    "/auth/token/",
    "/auth/token/refresh/",
    "/auth/token/revoke/",
    "/auth/token/revoke-all/",
]
BEARER_PATHS = {"/auth/token/revoke/", "/auth/token/revoke-all/"}
# How many generated requests each operation got in this process, for the reliability notes.
EXAMPLES_SENT = collections.Counter()


@pytest.fixture(autouse=True)
def fresh_throttle_history():
    """Start from an empty default cache, where the token views count requests for throttling."""
    caches["default"].clear()


@pytest.fixture
def keep_connection():
    """Keep the WSGI handler from closing the test's connection, inside its transaction."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def openapi_schema(settings, keep_connection):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    }
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": None, "refresh": None}}
    raw = SchemaGenerator(urlconf=__name__).get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = WSGIHandler()
    return schema


def operation_ids():
    return [
        "GET /auth/sessions/",
        "DELETE /auth/sessions/{session_id}/",
        "POST /auth/token/",
        "POST /auth/token/refresh/",
        "POST /auth/token/revoke/",
        "POST /auth/token/revoke-all/",
    ]


def header(response, name):
    for key, values in response.headers.items():
        if key.lower() == name:
            return values[0] if isinstance(values, list) else values
    return ""


def assert_error_has_code(response):
    if not 400 <= response.status_code < 500:
        return
    content_type = header(response, "content-type")
    assert content_type.startswith("application/json"), (response.status_code, content_type)
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("code"), str), body


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", operation_ids())
def test_generated_requests(db, openapi_schema, label, mode):
    operation = openapi_schema.find_operation_by_label(label)
    assert operation is not None, label
    user = UserFactory(username="alice")
    statuses = collections.Counter()
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]
    if django_settings.USE_TZ:
        # NOTE: with USE_TZ off the timestamps carry no UTC offset, so they are not the RFC 3339
        # date-time that the schema declares; the body shapes are checked with USE_TZ on only.
        checks.append(response_schema_conformance)

    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case):
        pair = services.issue_pair(user)
        sent = EXAMPLES_SENT[(label, mode.value)]
        headers = {"Authorization": f"Bearer {pair.access_token}"}
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            # Real credentials, so that positive examples also get past the lookups.
            if label == "POST /auth/token/refresh/":
                case.body["refresh_token"] = pair.refresh_token
            elif label == "POST /auth/token/":
                case.body["password"] = PASSWORD
                # Every other example logs in as a user who exists.
                if sent % 2:
                    case.body["username"] = user.username
        positive_delete = mode is GenerationMode.POSITIVE and label.startswith("DELETE")
        if positive_delete and sent % 2:
            case.path_parameters["session_id"] = str(pair.token.pk)
        response = case.call(headers=headers)
        statuses[response.status_code] += 1
        EXAMPLES_SENT[(label, mode.value)] += 1
        case.validate_response(response, checks=checks, headers=headers)
        assert_error_has_code(response)

    send()
    assert sum(statuses.values()) > 0


# Oversized headers.


@pytest.mark.parametrize("path", ["/api/me/", "/plain/me/", "/auth/sessions/"])
def test_authorization_over_limit(api_client, pair, path):
    value = f"Bearer {pair.access_token}" + " " * (MAX_HEADER_LENGTH - 7 - len(pair.access_token))
    assert len(value) == MAX_HEADER_LENGTH
    assert api_client.get(path, HTTP_AUTHORIZATION=value).status_code == 200

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(path, HTTP_AUTHORIZATION="Bearer " + "a" * MAX_HEADER_LENGTH)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_header"
    assert len(queries) == 0


@pytest.mark.parametrize("path", ["/api/me/", "/plain/me/", "/auth/token/revoke/"])
@pytest.mark.parametrize("scheme", ["Bearer ", "bearer ", "Basic ", ""])
def test_authorization_of_100_kilobytes(api_client, pair, path, scheme):
    value = scheme + "A" * 100_000

    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(path, HTTP_AUTHORIZATION=value)

    assert 400 <= response.status_code < 500
    assert len(queries) == 0
    if scheme.lower() == "bearer " or path.startswith("/auth/"):
        assert response.json()["code"]


def test_other_header_of_100_kilobytes(api_client, pair):
    response = api_client.get("/api/me/", HTTP_X_PADDING="x" * 100_000, **bearer(pair.access_token))

    assert response.status_code == 200


@pytest.mark.slow
def test_header_of_100_kilobytes_on_a_real_server(live_server, transactional_db):
    """Python's HTTP server rejects the header line itself; nothing reaches the app."""
    request = (
        b"GET /api/me/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
        + b"A" * 100_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        reply = sock.recv(256)

    # 431 Request Header Fields Too Large, from http.server's header parsing.
    assert int(reply.split(b" ", 2)[1]) == 431


# Oversized bodies.


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_body_over_upload_limit(api_client, pair, settings, path, content_type):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = json.dumps({"refresh_token": pair.refresh_token, "padding": "x" * 2048}).encode()
    if content_type != "application/json":
        body = b"refresh_token=" + pair.refresh_token.encode() + b"&padding=" + b"x" * 2048

    response = api_client.post(
        path, data=body, content_type=content_type, **bearer(pair.access_token)
    )

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_body_over_default_upload_limit(api_client, pair, settings):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = json.dumps({"refresh_token": pair.refresh_token, "padding": "x" * limit}).encode()

    response = api_client.post("/auth/token/refresh/", data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


@pytest.mark.parametrize("length", ["abc", "-1", "1e9", "99999999999999999999"])
def test_content_length_not_a_size(pair, length, keep_connection):
    environ_body = json.dumps({"refresh_token": pair.refresh_token}).encode()
    response = raw_wsgi_post("/auth/token/refresh/", environ_body, CONTENT_LENGTH=length)

    assert 400 <= response["status"] < 500
    assert json.loads(response["body"])["code"]


def raw_wsgi_post(path, body, content_type="application/json", **environ):
    """POST ``body`` through Django's WSGI handler with an environ the test client cannot build.

    Use it with the ``keep_connection`` fixture.
    """
    wsgi_environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        **environ,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"] = int(status.split(" ", 1)[0])

    result = WSGIHandler()(wsgi_environ, start_response)
    content = b"".join(result)
    result.close()
    return {"status": started["status"], "body": content}


# Deeply nested and undecodable bodies.

DEPTH = 100_000


@pytest.mark.parametrize("path", ["/auth/token/", "/auth/token/refresh/"])
@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEPTH + b"]" * DEPTH,
        b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
        b'{"refresh_token":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    ],
    ids=["arrays", "objects", "inside-a-field"],
)
def test_deeply_nested_json_on_token_views(api_client, pair, path, body):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(path, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert len(queries) == 0


@pytest.mark.parametrize("path", sorted(BEARER_PATHS))
def test_deeply_nested_json_on_bearer_views(api_client, pair, path):
    """These views read no body, so a nested one cannot hurt them: the request just succeeds."""
    body = b"[" * DEPTH + b"]" * DEPTH

    response = api_client.post(
        path, data=body, content_type="application/json", **bearer(pair.access_token)
    )

    assert response.status_code == 204


@pytest.mark.parametrize("path", ["/auth/token/", "/auth/token/refresh/"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"refresh_token": "\xff\xfe"}', "application/json"),
        (b"\xff\xfe{\x00}\x00", "application/json"),
        ('{"refresh_token": "patr_é"}'.encode("utf-16"), "application/json"),
        (b'{"refresh_token": "\xe9"}', "application/json; charset=latin-1"),
        (b'{"refresh_token": "\xe9"}', "application/json; charset=no-such-codec"),
    ],
    ids=["invalid-utf8", "bom-utf16le", "utf16", "latin1-declared", "unknown-charset"],
)
def test_json_body_not_utf8(api_client, pair, path, body, content_type):
    """A body that does not decode is a parse error; one that decodes as declared is read."""
    response = api_client.post(path, data=body, content_type=content_type)

    assert response.status_code in (400, 401)
    assert response.json()["code"] in ("parse_error", "invalid", "token_invalid")


@pytest.mark.parametrize(
    "body",
    [
        b"refresh_token=\xff\xfe",
        b"refresh_token=%FF%FE",
        b"refresh_token=patr_%00%01",
        b"\xff=\xff",
    ],
)
def test_form_body_not_utf8(api_client, pair, body):
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(
            "/auth/token/refresh/", data=body, content_type="application/x-www-form-urlencoded"
        )

    assert response.status_code in (400, 401)
    assert response.json()["code"] in ("invalid", "token_invalid")
    assert len(queries) == 0


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "multipart/form-data; boundary="],
)
def test_broken_multipart_body(api_client, pair, content_type):
    body = b"--x\r\nContent-Disposition: form-data; name=\xff\r\n\r\n\xff\r\n--x"

    response = api_client.post("/auth/token/refresh/", data=body, content_type=content_type)

    assert response.status_code == 400
    assert response.json()["code"]


@pytest.mark.parametrize("path", ["/auth/token/", "/auth/token/refresh/"])
def test_many_form_fields(api_client, pair, path, settings):
    fields = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1
    body = "&".join(f"f{number}=1" for number in range(fields)).encode()

    response = api_client.post(path, data=body, content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
