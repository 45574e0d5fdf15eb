from django.urls import path

from . import views

urlpatterns = [
    path("none/", views.OkView.as_view()),
    path("drf/", views.DrfTokenView.as_view()),
    path("knox/", views.KnoxView.as_view()),
    path("jwt/", views.JwtView.as_view()),
    path("pat/", views.PatView.as_view()),
]
