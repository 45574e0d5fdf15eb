from accounts import views
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("auth/", include("pat_tokens.urls")),
    path("api/me/", views.MeView.as_view(), name="me"),
    path("plain/me/", views.plain_me, name="plain-me"),
]
