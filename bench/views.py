"""One tiny view, ``{"ok": true}``, under each authentication scheme that is compared."""

from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.authentication import JWTAuthentication

from pat_tokens.authentication import PersonalAccessTokenAuthentication


class OkView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


class DrfTokenView(OkView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]


class KnoxView(OkView):
    authentication_classes = [KnoxTokenAuthentication]
    permission_classes = [IsAuthenticated]


class JwtView(OkView):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]


class PatView(OkView):
    authentication_classes = [PersonalAccessTokenAuthentication]
    permission_classes = [IsAuthenticated]
