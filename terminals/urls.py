from django.urls import path

from terminals import views

urlpatterns = [
    path("p/<str:session_id>/", views.session_page, name="session-page"),
]
