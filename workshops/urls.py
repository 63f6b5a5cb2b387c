from django.urls import path

from workshops import views

urlpatterns = [
    path("workshops/", views.dashboard, name="workshops"),
    path("workshops/<uuid:workshop_id>/", views.wall, name="workshop-wall"),
    path("w/<str:code>/", views.join, name="workshop-join"),
]
