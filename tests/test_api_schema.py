"""The OpenAPI document: served at /api/schema/ and covering every API route."""

import re

import pytest
from django.test import AsyncClient

from sessions_app import urls, views


def schema_path(route: str) -> str:
    """A Django route ("api/sessions/<str:session_id>/") as an OpenAPI path."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


async def test_the_schema_is_served_as_openapi_3_1_json():
    response = await AsyncClient().get("/api/schema/")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["paths"]


@pytest.mark.parametrize("pattern", urls.urlpatterns, ids=lambda p: str(p.pattern))
def test_every_api_route_and_method_is_in_the_schema(pattern):
    paths = views.openapi_document()["paths"]
    path = schema_path(str(pattern.pattern))

    assert path in paths, f"{path} is missing from sessions_app/openapi.yaml"
    documented = {method.upper() for method in paths[path] if method != "parameters"}
    assert documented == set(pattern.callback.api_methods)


def test_every_reference_in_the_schema_resolves():
    document = views.openapi_document()
    text = repr(document)
    for ref in set(re.findall(r"'\$ref': '#/([^']+)'", text)):
        node = document
        for part in ref.split("/"):
            node = node[part]
