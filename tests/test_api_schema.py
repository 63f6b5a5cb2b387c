"""The OpenAPI document is made from the operations: served at /api/schema/, covering
every route, listing the allowed images, with docs at /api/docs/ from local files."""

import re
from pathlib import Path
from unittest import mock

import pytest
from asgiref.sync import AsyncToSync, SyncToAsync
from django.test import AsyncClient

from sessions_app import views

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent


async def _document() -> dict:
    response = await AsyncClient().get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    return response.json()


async def test_the_schema_is_served_as_openapi_3_1_json():
    document = await _document()

    assert document["openapi"].startswith("3.1")
    assert document["paths"]


def _operations():
    for route, path_view in views.router.path_operations.items():
        for operation in path_view.operations:
            yield route, operation


@pytest.mark.parametrize(
    ("route", "operation"),
    list(_operations()),
    ids=[f"{op.methods} {route}" for route, op in _operations()],
)
async def test_every_api_route_and_method_is_in_the_schema(route, operation):
    paths = (await _document())["paths"]
    path = "/api" + route

    if operation.methods == ["HEAD"]:
        assert "head" not in paths[path]
        return
    assert path in paths
    for method in operation.methods:
        documented = paths[path][method.lower()]
        assert documented["operationId"]
        assert documented["responses"]


async def test_every_reference_in_the_schema_resolves():
    document = await _document()
    for ref in set(re.findall(r"'\$ref': '#/([^']+)'", repr(document))):
        node = document
        for part in ref.split("/"):
            node = node[part]


async def test_every_error_answer_is_the_error_shape():
    document = await _document()
    error = {"$ref": "#/components/schemas/Error"}

    for operations in document["paths"].values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    assert answer["content"]["application/json"]["schema"] == error
    shape = document["components"]["schemas"]["ErrorDetail"]
    assert shape["required"] == ["code", "message"]


async def test_an_add_lists_the_allowed_images_and_documents_bad_image(settings):
    settings.PWD_NODE_IMAGES = [settings.PWD_NODE_IMAGE, "pwd-node-extra"]
    document = await _document()

    add = document["paths"]["/api/sessions/{session_id}/nodes/"]["post"]
    image = document["components"]["schemas"]["NewNode"]["properties"]["image"]
    assert {"type": "string", "enum": [settings.PWD_NODE_IMAGE, "pwd-node-extra"]} in image["anyOf"]
    # null means the default image (PWD_NODE_IMAGE), as it always has.
    assert {"type": "null"} in image["anyOf"]
    assert "400" in add["responses"]
    assert "bad_image" in add["description"]


async def test_a_null_image_is_the_default_image_and_others_are_bad_image():
    client = AsyncClient()
    null = await client.post(
        "/api/sessions/nope/nodes/", '{"image": null}', content_type="application/json"
    )
    other = await client.post(
        "/api/sessions/nope/nodes/", '{"image": "pwd-node:other"}', content_type="application/json"
    )

    # Past the image check: the session is simply not there.
    assert null.status_code == 404
    assert other.status_code == 400
    assert other.json()["error"]["code"] == "bad_image"


async def test_the_docs_page_loads_its_scripts_from_local_static_files():
    client = AsyncClient()
    response = await client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    for attributes, body in scripts:
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes
        assert "src=" not in attributes or not body.strip()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        b"".join(served.streaming_content)
    assert "/api/schema/" in html


def test_there_is_no_hand_written_schema_any_more():
    assert not list((ROOT / "sessions_app").glob("*.yaml"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/schema/", None),
        ("GET", "/api/docs/", None),
        ("POST", "/api/sessions/nope/nodes/", '{"image": "ubuntu"}'),
        ("POST", "/api/sessions/nope/nodes/node1/exec/", '{"command": []}'),
    ],
)
async def test_the_api_holds_no_thread_for_its_own_work(method, path, body):
    """No AsyncToSync hop, and no thread for a sync view: the document and the docs are
    rendered on the loop, and a refused body never reaches the database's thread.
    (Django runs sync middleware and signal receivers on a thread; that is not counted.)"""
    hops = []

    def counting(original):
        def call(self, *args, **kwargs):
            hops.append(getattr(self, "func", getattr(self, "awaitable", None)))
            return original(self, *args, **kwargs)

        return call

    with (
        mock.patch.object(AsyncToSync, "__call__", counting(AsyncToSync.__call__)),
        mock.patch.object(SyncToAsync, "__call__", counting(SyncToAsync.__call__)),
    ):
        response = await AsyncClient().generic(
            method, path, body or "", content_type="application/json"
        )
    assert response.status_code < 500
    assert [f for f in hops if _module(f).startswith(("ninja", "sessions_app"))] == []


def _module(function) -> str:
    function = getattr(function, "func", function)  # a partial: ninja's docs views
    return getattr(function, "__module__", "") or ""
