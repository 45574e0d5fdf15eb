from django.urls import path

from . import views

app_name = "pat_tokens"

urlpatterns = [
    path("token/", views.ObtainTokenView.as_view(), name="obtain"),
    path("token/refresh/", views.RefreshTokenView.as_view(), name="refresh"),
    path("token/revoke/", views.RevokeTokenView.as_view(), name="revoke"),
    path("token/revoke-all/", views.RevokeAllTokensView.as_view(), name="revoke-all"),
    path("sessions/", views.SessionListView.as_view(), name="session-list"),
    path("sessions/<str:session_id>/", views.SessionDetailView.as_view(), name="session-detail"),
]
