"""Every API error is JSON with the right status; browsers on foreign origins are kept
out of state-changing calls, listed origins get CORS answers."""

import pytest
from django.test import AsyncClient

from sessions_app import engine
from sessions_app.models import Session
from tests.api_helpers import error_of, post

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_unknown_api_url_is_a_json_404():
    response = await AsyncClient().get("/api/nothing-here/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


async def test_a_wrong_method_is_a_json_405_with_allow():
    response = await AsyncClient().get("/api/sessions/")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
async def test_a_malformed_body_is_a_json_400(body):
    response = await AsyncClient().post("/api/sessions/", body, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] in {"invalid_json", "invalid_request"}


async def test_a_large_body_is_a_json_413():
    response = await post(AsyncClient(), "/api/sessions/", {"padding": "x" * 100_000})

    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


async def test_a_disallowed_image_is_a_400_before_anything_starts():
    response = await post(AsyncClient(), "/api/sessions/whatever/nodes/", {"image": "ubuntu"})

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_image"


async def test_an_engine_that_does_not_answer_is_a_json_503(monkeypatch):
    def refuse(session_id):
        raise engine.EngineUnavailable("the Docker engine does not answer")

    monkeypatch.setattr(engine, "create_session_network", refuse)
    response = await post(AsyncClient(), "/api/sessions/")

    assert response.status_code == 503
    assert error_of(response)["code"] == "engine_unavailable"
    assert not await Session.objects.aexists()


async def test_a_foreign_origin_cannot_change_anything():
    client = AsyncClient()

    for response in [
        await post(client, "/api/sessions/", Origin="https://evil.example"),
        await client.delete("/api/sessions/x/", headers={"Origin": "https://evil.example"}),
        await post(client, "/api/sessions/", Origin="null"),
    ]:
        assert response.status_code == 403
        assert error_of(response)["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response


async def test_a_foreign_origin_gets_no_cors_headers_on_a_read():
    response = await AsyncClient().get("/api/schema/", headers={"Origin": "https://evil.example"})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


async def test_a_listed_origin_gets_preflight_answers_and_cors_headers(settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://training.example"]
    client = AsyncClient()

    preflight = await client.options(
        "/api/sessions/",
        headers={
            "Origin": "https://training.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    read = await client.get("/api/schema/", headers={"Origin": "https://training.example"})
    refused = await client.options(
        "/api/sessions/",
        headers={"Origin": "https://other.example", "Access-Control-Request-Method": "POST"},
    )

    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == "https://training.example"
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert preflight["Access-Control-Allow-Headers"] == "content-type"
    assert read["Access-Control-Allow-Origin"] == "https://training.example"
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused


async def test_the_apps_own_origin_and_clients_without_origin_are_allowed():
    client = AsyncClient()
    same = await client.delete("/api/sessions/unknown/", headers={"Origin": "http://testserver"})
    bare = await client.delete("/api/sessions/unknown/")

    # Past the origin check: the session is simply not there.
    assert same.status_code == 404
    assert bare.status_code == 404
