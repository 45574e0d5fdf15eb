"""The OpenAPI schema that drf-spectacular generates for the token API.

This module is also the URLconf of the schema: the app's URLs without the test project's other
views. ``HostURLs`` is a second URLconf with a host view behind a subclass of the authentication
class. drf-spectacular warns when one schema names one security scheme for two classes, so the
subclass gets a schema of its own.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS, reset_generator_stats
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.management.commands.spectacular import Command as SpectacularCommand
from drf_spectacular.validation import validate_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from pat_tokens.authentication import PersonalAccessTokenAuthentication

from .conftest import TOKEN_RESPONSE_KEYS, bearer


class HostAuthentication(PersonalAccessTokenAuthentication):
    """A host project's subclass of the authentication class."""


class HostSerializer(serializers.Serializer):
    username = serializers.CharField()


class HostView(GenericAPIView):
    """A host project's view behind the subclass.

    ``serializer_class`` rather than ``extend_schema``: the decorator would bind to the schema
    class configured at import, before the tests switch to drf-spectacular's.
    """

    authentication_classes = (HostAuthentication,)
    serializer_class = HostSerializer

    def get(self, request):
        return Response({"username": request.user.get_username()})


urlpatterns = [path("auth/", include("pat_tokens.urls"))]


class HostURLs:
    urlpatterns = [path("host/", HostView.as_view())]


ROOT = Path(__file__).resolve().parent.parent
SCHEME = "personalAccessToken"
OPERATIONS = {
    ("/auth/token/", "post"): "pat_tokens_obtain",
    ("/auth/token/refresh/", "post"): "pat_tokens_refresh",
    ("/auth/token/revoke/", "post"): "pat_tokens_revoke",
    ("/auth/token/revoke-all/", "post"): "pat_tokens_revoke_all",
    ("/auth/sessions/", "get"): "pat_tokens_session_list",
    ("/auth/sessions/{session_id}/", "delete"): "pat_tokens_session_delete",
}
TOKEN_VIEW_STATUSES = {"200", "400", "401", "413", "415", "429"}
STATUSES = {
    "pat_tokens_obtain": TOKEN_VIEW_STATUSES,
    "pat_tokens_refresh": TOKEN_VIEW_STATUSES,
    "pat_tokens_revoke": {"204", "401"},
    "pat_tokens_revoke_all": {"204", "401"},
    "pat_tokens_session_list": {"200", "401"},
    "pat_tokens_session_delete": {"204", "401", "404"},
}
SESSION_KEYS = {
    "id",
    "created_at",
    "updated_at",
    "expires_access_token",
    "expires_refresh_token",
    "current",
}
FORM_MEDIA_TYPES = {"application/json", "application/x-www-form-urlencoded"}


@pytest.fixture
def spectacular_settings(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    }
    reset_generator_stats()
    yield settings
    reset_generator_stats()


def generate():
    return SchemaGenerator(urlconf=__name__).get_schema(request=None, public=True)


@pytest.fixture
def schema(spectacular_settings):
    return generate()


def operations(schema):
    """Return {operationId: (path, method, operation)} for every operation of the app."""
    return {
        operation["operationId"]: (url, method, operation)
        for url, methods in schema["paths"].items()
        for method, operation in methods.items()
        if url.startswith("/auth/")
    }


def operation(schema, operation_id):
    return operations(schema)[operation_id][2]


def component(schema, reference):
    prefix = "#/components/schemas/"
    assert reference.startswith(prefix), reference
    return schema["components"]["schemas"][reference.removeprefix(prefix)]


def response_schema(schema, operation_id, status):
    content = operation(schema, operation_id)["responses"][status]["content"]
    return content["application/json"]["schema"]


def assert_matches(schema, operation_id, response):
    """Validate a real response body against the schema documented for its status code."""
    documented = response_schema(schema, operation_id, str(response.status_code))
    jsonschema.validate(response.json(), {**documented, "components": schema["components"]})


def test_schema_is_valid_openapi(schema):
    validate_schema(schema)


def test_generation_emits_no_warnings(spectacular_settings):
    generate()

    assert not GENERATOR_STATS


def test_security_scheme(schema):
    definition = schema["components"]["securitySchemes"][SCHEME]

    assert definition["type"] == "http"
    assert definition["scheme"] == "bearer"
    assert "'pat_'" in definition["description"]


def test_security_scheme_follows_prefix(spectacular_settings):
    spectacular_settings.PAT_TOKENS = {"ACCESS_TOKEN_PREFIX": "acme_"}

    definition = generate()["components"]["securitySchemes"][SCHEME]

    assert "'acme_'" in definition["description"]


def test_host_subclass_uses_scheme(spectacular_settings):
    schema = SchemaGenerator(urlconf=HostURLs).get_schema(request=None, public=True)

    assert schema["paths"]["/host/"]["get"]["security"] == [{SCHEME: []}]
    assert schema["components"]["securitySchemes"][SCHEME]["scheme"] == "bearer"
    assert not GENERATOR_STATS


def test_every_operation_documented(schema):
    found = {(url, method): op_id for op_id, (url, method, _) in operations(schema).items()}

    assert found == OPERATIONS


@pytest.mark.parametrize("operation_id", sorted(STATUSES))
def test_response_statuses(schema, operation_id):
    assert set(operation(schema, operation_id)["responses"]) == STATUSES[operation_id]


@pytest.mark.parametrize(
    "operation_id",
    [
        "pat_tokens_revoke",
        "pat_tokens_revoke_all",
        "pat_tokens_session_list",
        "pat_tokens_session_delete",
    ],
)
def test_bearer_operations_require_scheme(schema, operation_id):
    assert operation(schema, operation_id)["security"] == [{SCHEME: []}]


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_refresh"])
def test_token_operations_need_no_auth(schema, operation_id):
    security = operation(schema, operation_id).get("security", [{}])

    assert all(SCHEME not in requirement for requirement in security)


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_refresh"])
def test_token_response_shape(schema, operation_id):
    token_response = component(schema, response_schema(schema, operation_id, "200")["$ref"])

    assert set(token_response["properties"]) == TOKEN_RESPONSE_KEYS
    assert set(token_response["required"]) == TOKEN_RESPONSE_KEYS
    assert token_response["properties"]["expires_in"]["type"] == "integer"
    assert token_response["properties"]["access_token_expires_at"]["format"] == "date-time"
    headers = operation(schema, operation_id)["responses"]["200"]["headers"]
    assert "Cache-Control" in headers


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_refresh"])
@pytest.mark.parametrize("status", ["401", "413", "415", "429"])
def test_token_error_shape(schema, operation_id, status):
    error = component(schema, response_schema(schema, operation_id, status)["$ref"])

    assert set(error["properties"]) == {"detail", "code", "error"}
    assert set(error["required"]) == {"detail", "code", "error"}
    oauth_error = error["properties"]["error"]["allOf"][0]["$ref"]
    assert component(schema, oauth_error)["enum"] == [
        "invalid_request",
        "invalid_grant",
        "unsupported_grant_type",
    ]


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_refresh"])
def test_token_validation_error_shape(schema, operation_id):
    error = response_schema(schema, operation_id, "400")

    assert set(error["required"]) == {"code", "error"}
    assert error["additionalProperties"] == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_refresh"])
def test_throttled_response_has_retry_after(schema, operation_id):
    assert "Retry-After" in operation(schema, operation_id)["responses"]["429"]["headers"]


@pytest.mark.parametrize(
    ("operation_id", "status"),
    [
        ("pat_tokens_revoke", "401"),
        ("pat_tokens_revoke_all", "401"),
        ("pat_tokens_session_list", "401"),
        ("pat_tokens_session_delete", "401"),
        ("pat_tokens_session_delete", "404"),
    ],
)
def test_bearer_error_shape(schema, operation_id, status):
    error = component(schema, response_schema(schema, operation_id, status)["$ref"])

    assert set(error["properties"]) == {"detail", "code"}
    assert set(error["required"]) == {"detail", "code"}


@pytest.mark.parametrize(
    "operation_id", ["pat_tokens_revoke", "pat_tokens_revoke_all", "pat_tokens_session_delete"]
)
def test_no_content_responses(schema, operation_id):
    response = operation(schema, operation_id)["responses"]["204"]

    assert "content" not in response


@pytest.mark.parametrize("operation_id", ["pat_tokens_obtain", "pat_tokens_revoke"])
def test_401_has_challenge_header(schema, operation_id):
    response = operation(schema, operation_id)["responses"]["401"]

    assert "WWW-Authenticate" in response["headers"]


def request_component(schema, operation_id):
    content = operation(schema, operation_id)["requestBody"]["content"]
    assert set(content) == FORM_MEDIA_TYPES
    references = {media["schema"]["$ref"] for media in content.values()}
    assert len(references) == 1
    return component(schema, references.pop())


def test_obtain_request(schema):
    body = request_component(schema, "pat_tokens_obtain")

    assert set(body["properties"]) == {"username", "password", "grant_type"}
    assert set(body["required"]) == {"username", "password"}
    grant_type = component(schema, body["properties"]["grant_type"]["allOf"][0]["$ref"])
    assert grant_type["enum"] == ["password"]
    assert operation(schema, "pat_tokens_obtain")["requestBody"]["required"] is True


def test_obtain_request_with_email_login(spectacular_settings, monkeypatch):
    monkeypatch.setattr(get_user_model(), "USERNAME_FIELD", "email")

    schema = generate()

    forms = request_component(schema, "pat_tokens_obtain")
    credentials, password_grant = (component(schema, form["$ref"]) for form in forms["oneOf"])
    assert set(credentials["required"]) == {"email", "password"}
    assert set(password_grant["required"]) == {"grant_type", "username", "password"}
    assert not GENERATOR_STATS


def test_refresh_request(schema):
    body = request_component(schema, "pat_tokens_refresh")

    assert set(body["properties"]) == {"refresh_token", "grant_type"}
    assert body["required"] == ["refresh_token"]
    grant_type = component(schema, body["properties"]["grant_type"]["allOf"][0]["$ref"])
    assert grant_type["enum"] == ["refresh_token"]


def test_session_list_response(schema):
    documented = response_schema(schema, "pat_tokens_session_list", "200")

    assert documented["type"] == "array"
    session = component(schema, documented["items"]["$ref"])
    assert set(session["properties"]) == SESSION_KEYS
    assert session["properties"]["current"]["type"] == "boolean"


def test_session_id_parameter(schema):
    (parameter,) = operation(schema, "pat_tokens_session_delete")["parameters"]

    assert parameter["name"] == "session_id"
    assert parameter["in"] == "path"
    assert parameter["schema"]["type"] == "integer"


@pytest.mark.django_db
def test_real_responses_match_schema(schema, api_client, alice, password):
    obtained = api_client.post(
        "/auth/token/", {"username": "alice", "password": password}, format="json"
    )
    assert obtained.status_code == 200
    assert_matches(schema, "pat_tokens_obtain", obtained)

    missing = api_client.post("/auth/token/", {}, format="json")
    assert missing.status_code == 400
    assert_matches(schema, "pat_tokens_obtain", missing)

    grant = api_client.post("/auth/token/", {"grant_type": "implicit"})
    assert grant.status_code == 400
    assert_matches(schema, "pat_tokens_obtain", grant)

    wrong = api_client.post("/auth/token/", {"username": "alice", "password": "wrong"})
    assert wrong.status_code == 401
    assert_matches(schema, "pat_tokens_obtain", wrong)

    media = api_client.post("/auth/token/refresh/", "x", content_type="text/plain")
    assert media.status_code == 415
    assert_matches(schema, "pat_tokens_refresh", media)

    tokens = obtained.json()
    refreshed = api_client.post(
        "/auth/token/refresh/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refreshed.status_code == 200
    assert_matches(schema, "pat_tokens_refresh", refreshed)

    stale = api_client.post(
        "/auth/token/refresh/", {"refresh_token": tokens["refresh_token"]}, format="json"
    )
    assert stale.status_code == 401
    assert_matches(schema, "pat_tokens_refresh", stale)

    access = refreshed.json()["access_token"]
    sessions = api_client.get("/auth/sessions/", **bearer(access))
    assert sessions.status_code == 200
    assert_matches(schema, "pat_tokens_session_list", sessions)

    anonymous = api_client.get("/auth/sessions/")
    assert anonymous.status_code == 401
    assert_matches(schema, "pat_tokens_session_list", anonymous)

    unknown = api_client.delete("/auth/sessions/2147483647/", **bearer(access))
    assert unknown.status_code == 404
    assert_matches(schema, "pat_tokens_session_delete", unknown)


@pytest.fixture
def empty_throttle_cache():
    """Start and end with no throttle history in the default cache."""
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db
def test_throttled_response_matches_schema(
    schema, api_client, alice, settings, empty_throttle_cache
):
    settings.PAT_TOKENS = {"THROTTLE_RATES": {"obtain": "1/minute"}}
    body = {"username": "alice", "password": "wrong"}
    api_client.post("/auth/token/", body)

    throttled = api_client.post("/auth/token/", body)

    assert throttled.status_code == 429
    assert "Retry-After" in throttled.headers
    assert_matches(schema, "pat_tokens_obtain", throttled)


def test_spectacular_command(spectacular_settings):
    """``manage.py spectacular --fail-on-warn --validate`` succeeds for the app's views.

    The command object is passed directly, so drf_spectacular need not be in INSTALLED_APPS.
    """
    out = io.StringIO()

    call_command(
        SpectacularCommand(),
        "--urlconf",
        __name__,
        "--fail-on-warn",
        "--validate",
        "--format",
        "openapi-json",
        stdout=out,
    )

    assert '"personalAccessToken"' in out.getvalue()
    assert '"pat_tokens_obtain"' in out.getvalue()


WITHOUT_SPECTACULAR = """
import sys

sys.modules["drf_spectacular"] = None  # what importing a package that is not installed sees

import django
from django.core.management import call_command

django.setup()
import pat_tokens.views  # noqa: E402

call_command("check")
prefixes = ("drf_spectacular.", "pat_tokens.schema")
print("loaded:", sorted(name for name in sys.modules if name.startswith(prefixes)))
"""


def test_app_runs_without_spectacular():
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "example_project")]),
    }

    result = subprocess.run(  # noqa: S603 (a fixed command line)
        [sys.executable, "-c", WITHOUT_SPECTACULAR],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "loaded: []"
