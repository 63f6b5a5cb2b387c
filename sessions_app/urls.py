from django.urls import path

from sessions_app.api import api

# /api/schema/ (the OpenAPI document), /api/docs/ and the operations in views.py.
urlpatterns = [
    path("api/", api.urls),
]
