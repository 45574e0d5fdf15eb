from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView


def _describe(user):
    return {"user_id": str(user.pk), "username": user.get_username(), "email": user.email}


class MeView(APIView):
    """Return the authenticated user to DRF clients."""

    def get(self, request):
        return Response(_describe(request.user))


def plain_me(request):
    """Return the authenticated user from a plain Django view behind the bearer middleware."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    return JsonResponse(_describe(request.user))


def index(request):
    """List the example project's entry points, so that its root URL is not a 404."""
    return JsonResponse(
        {
            "admin": "/admin/",
            "obtain_token": "/auth/token/",
            "refresh_token": "/auth/token/refresh/",
            "revoke_token": "/auth/token/revoke/",
            "revoke_all_tokens": "/auth/token/revoke-all/",
            "sessions": "/auth/sessions/",
            "me": "/api/me/",
            "plain_me": "/plain/me/",
        }
    )
