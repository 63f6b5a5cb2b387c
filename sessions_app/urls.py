from django.urls import path

from sessions_app import views

# Every route here must appear in openapi.yaml (tests/test_api_schema.py checks).
urlpatterns = [
    path("api/schema/", views.schema, name="api-schema"),
    path("api/sessions/", views.sessions, name="api-sessions"),
    path("api/sessions/<str:session_id>/", views.session_detail, name="api-session"),
    path("api/sessions/<str:session_id>/nodes/", views.nodes, name="api-nodes"),
    path("api/sessions/<str:session_id>/nodes/<str:name>/", views.node_detail, name="api-node"),
    path(
        "api/sessions/<str:session_id>/nodes/<str:name>/exec/",
        views.node_exec,
        name="api-node-exec",
    ),
]
