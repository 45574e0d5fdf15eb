"""Bearer authentication for plain Django views."""

from django.http import JsonResponse

from .authentication import authenticate_token, challenge
from .exceptions import BearerAuthenticationFailed
from .headers import get_bearer_token


class PersonalAccessTokenMiddleware:
    """Set ``request.user`` from an ``Authorization: Bearer`` header, as the DRF class does.

    Place it after ``AuthenticationMiddleware``. Without a bearer header the request is left alone.
    A malformed, unknown, expired or revoked token gets the same 401 JSON body and
    ``WWW-Authenticate`` header as the DRF class: a silent fall-back to the anonymous user would
    hide a broken client. ``request.auth`` is set to the session row.

    A bearer-authenticated request is exempt from CSRF checks: the browser does not attach the
    header on its own, so a cross-site request cannot carry it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            token = get_bearer_token(request.META.get("HTTP_AUTHORIZATION"))
            if token is not None:
                request.user, request.auth = authenticate_token(token, request)
                request._dont_enforce_csrf_checks = True
        except BearerAuthenticationFailed as error:
            return _failure_response(error)
        return self.get_response(request)


def _failure_response(error):
    response = JsonResponse(error.detail, status=error.status_code)
    response["WWW-Authenticate"] = challenge(error.bearer_error)
    return response
