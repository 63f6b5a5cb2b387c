from django.urls import path

from sessions_app import views
from sessions_app.api import api

api.add_router("", views.router)

# /api/schema/ (the OpenAPI document), /api/docs/ and every operation of views.router.
urlpatterns = [
    path("api/", api.urls),
]
