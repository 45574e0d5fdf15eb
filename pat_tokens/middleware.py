"""Bearer authentication for plain Django views."""

from django.http import JsonResponse
from django.urls import Resolver404, resolve
from rest_framework.views import APIView

from .authentication import authenticate_request, challenge
from .exceptions import BearerAuthenticationFailed


class PersonalAccessTokenMiddleware:
    """Set ``request.user`` from an ``Authorization: Bearer`` header, as the DRF class does.

    Place it after ``AuthenticationMiddleware``, which would otherwise replace the user. Without a
    bearer header the request is left alone. A malformed, unknown, expired or revoked token gets
    the same 401 JSON body and ``WWW-Authenticate`` header as the DRF class: a silent fall-back to
    the anonymous user would hide a broken client. ``request.auth`` is set to the session row.

    A bearer-authenticated request to a plain view is exempt from CSRF checks: the browser does
    not attach the header on its own, so a cross-site request cannot carry it.

    DRF views are left to their own authentication classes, so for them the middleware sends no
    401 and lifts no CSRF check. The DRF class reuses the outcome kept on the request, so a request
    costs one lookup either way. A view without bearer authentication, such as the token refresh
    view, therefore still works when the client sends an expired access token along.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            result = authenticate_request(request)
        except BearerAuthenticationFailed as error:
            if not _is_drf_view(request):
                return _failure_response(error)
            result = None

        if result is not None:
            request.user, request.auth = result
            if not _is_drf_view(request):
                request._dont_enforce_csrf_checks = True
        return self.get_response(request)


def _is_drf_view(request):
    """Return whether the path of ``request`` resolves to a DRF view (``False`` for a 404)."""
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    view_class = getattr(match.func, "cls", None)
    return isinstance(view_class, type) and issubclass(view_class, APIView)


def _failure_response(error):
    response = JsonResponse(error.detail, status=error.status_code)
    response["WWW-Authenticate"] = challenge(error.bearer_error)
    return response
