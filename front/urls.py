from django.urls import path

from front import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("healthz", views.healthz, name="healthz"),
    path("start/", views.start, name="start"),
    path("p/<str:session_id>/", views.session_page, name="session-page"),
]
