from django.urls import include, path

urlpatterns = [
    path("", include("front.urls")),
    path("", include("sessions_app.urls")),
]
