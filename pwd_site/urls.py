from django.urls import include, path

urlpatterns = [
    # Play with Docker's routes first: its POST / shares the landing page's path.
    path("", include("pwd_compat.urls")),
    path("", include("front.urls")),
    path("", include("sessions_app.urls")),
]
