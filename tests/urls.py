from accounts.views import MeView, plain_me
from django.contrib import admin
from django.urls import include, path
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView


class AdminOnlyView(APIView):
    permission_classes = (IsAdminUser,)

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("auth/", include("pat_tokens.urls")),
    path("api/me/", MeView.as_view(), name="me"),
    path("api/admin-only/", AdminOnlyView.as_view(), name="admin-only"),
    path("plain/me/", plain_me, name="plain-me"),
]
