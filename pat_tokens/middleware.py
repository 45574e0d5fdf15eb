"""Bearer authentication for plain Django views."""

from django.http import JsonResponse
from rest_framework.views import APIView

from .authentication import authenticate_request, challenge
from .exceptions import BearerAuthenticationFailed


class PersonalAccessTokenMiddleware:
    """Set ``request.user`` from an ``Authorization: Bearer`` header, as the DRF class does.

    Place it after ``AuthenticationMiddleware``. Without a bearer header the request is left alone.
    A malformed, unknown, expired or revoked token gets the same 401 JSON body and
    ``WWW-Authenticate`` header as the DRF class: a silent fall-back to the anonymous user would
    hide a broken client. ``request.auth`` is set to the session row.

    DRF views are left to their own authentication classes. The DRF class reuses the outcome kept
    on the request, so a request costs one lookup either way. A view without bearer
    authentication, such as the token refresh view, therefore still works when the client sends
    an expired access token along.

    A bearer-authenticated request is exempt from CSRF checks: the browser does not attach the
    header on its own, so a cross-site request cannot carry it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            result = authenticate_request(request)
        except BearerAuthenticationFailed:
            # Answered in process_view(), once it is known whether the view is a DRF view.
            result = None
        if result is not None:
            request.user, request.auth = result
            request._dont_enforce_csrf_checks = True
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if _is_drf_view(view_func):
            return None
        try:
            authenticate_request(request)
        except BearerAuthenticationFailed as error:
            return _failure_response(error)
        return None


def _is_drf_view(view_func):
    view_class = getattr(view_func, "cls", None)
    return isinstance(view_class, type) and issubclass(view_class, APIView)


def _failure_response(error):
    response = JsonResponse(error.detail, status=error.status_code)
    response["WWW-Authenticate"] = challenge(error.bearer_error)
    return response
