"""PWD's routes at the site's root, exactly as the SDK calls them (no trailing slash)."""

from django.urls import path

from pwd_compat import views

SESSION = "sessions/<str:session_id>"
INSTANCE = SESSION + "/instances/<str:name>"

urlpatterns = [
    path("", views.root, name="compat-root"),
    path("ping", views.ping),
    path("oauth/providers", views.oauth_providers),
    path("users/me", views.users_me),
    path(SESSION, views.session),
    path(SESSION + "/close", views.close),
    path(SESSION + "/setup", views.setup_session),
    path(SESSION + "/instances", views.instances),
    path(INSTANCE, views.instance),
    path(INSTANCE + "/exec", views.exec_command),
    path(INSTANCE + "/uploads", views.upload),
]
