from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", include("metrics.urls")),  # /metrics, and /admin/capacity/ before the admin
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("workshops.urls")),  # /workshops/ (instructors), /w/<code>/ (join)
    # Play with Docker's routes first: its POST / shares the landing page's path.
    path("", include("pwd_compat.urls")),
    path("", include("front.urls")),
    path("", include("sessions_app.urls")),
]
