from django.urls import include, path

from pwd_site import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("start/", views.start, name="start"),
    path("", include("sessions_app.urls")),
    path("", include("terminals.urls")),
]
