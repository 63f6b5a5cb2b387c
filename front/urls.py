from django.urls import path

from front import embed, views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("start/", views.start, name="start"),
    path("p/<str:session_id>/", views.session_page, name="session-page"),
    path("embed/", embed.frame, name="embed-frame"),
    path("embed/sessions/", embed.sessions, name="embed-sessions"),
    path("embed/sessions/<str:session_id>/end/", embed.end, name="embed-end"),
    path("docs/try/", embed.lesson, name="lesson"),
]
