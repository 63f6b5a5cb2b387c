"""The workshop API's rules, without the engine: who may see and change what, what a
bad request is told, and how seats are handed out (join, rejoin, full, ended)."""

import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.utils import timezone

from sessions_app.models import Session
from tests.workshop_helpers import (
    PASSWORD,
    auth,
    join,
    make_user,
    seat_ready,
    token_for,
    workshop_of,
)
from workshops.models import ApiToken, Seat, Workshop, hash_secret

pytestmark = pytest.mark.django_db(transaction=True)


def error(response) -> str:
    return response.json()["error"]["code"]


async def create(client, body, **headers):
    return await client.post(
        "/api/workshops/", json.dumps(body), content_type="application/json", headers=headers
    )


# --- who may do what ----------------------------------------------------------------


async def test_an_anonymous_client_is_told_to_log_in_or_send_a_token():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner)
    client = AsyncClient()
    for response in (
        await client.get(f"/api/workshops/{workshop.pk}/"),
        await client.get("/api/workshops/"),
        await create(client, {"title": "x", "seats": 1}),
        await client.delete(f"/api/workshops/{workshop.pk}/"),
    ):
        assert response.status_code == 401, response.content
        assert error(response) == "not_authenticated"
    assert await Workshop.objects.filter(pk=workshop.pk, ended_at__isnull=True).aexists()


async def test_a_logged_in_user_without_the_permission_is_refused():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner)
    trainee = await sync_to_async(make_user)("trainee", instructor=False)
    client = AsyncClient()
    await sync_to_async(client.force_login)(trainee)
    response = await client.get(f"/api/workshops/{workshop.pk}/")
    assert response.status_code == 403
    assert error(response) == "not_instructor"
    token = await sync_to_async(token_for)(trainee)
    response = await create(AsyncClient(), {"title": "x", "seats": 1}, **auth(token))
    assert response.status_code == 403
    assert not await Workshop.objects.filter(title="x").aexists()


async def test_an_instructor_of_another_workshop_sees_nothing_of_it():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner)
    other = await sync_to_async(make_user)("other")
    headers = auth(await sync_to_async(token_for)(other))
    client = AsyncClient()
    message = json.dumps({"text": "hi"})
    for response in (
        await client.get(f"/api/workshops/{workshop.pk}/", headers=headers),
        await client.delete(f"/api/workshops/{workshop.pk}/", headers=headers),
        await client.post(f"/api/workshops/{workshop.pk}/extend/", headers=headers),
        await client.post(
            f"/api/workshops/{workshop.pk}/message/",
            message,
            content_type="application/json",
            headers=headers,
        ),
    ):
        assert response.status_code == 404, response.content
        assert error(response) == "workshop_not_found"
    assert (await client.get("/api/workshops/", headers=headers)).json() == []
    assert await Workshop.objects.filter(pk=workshop.pk, ended_at__isnull=True).aexists()


async def test_bad_tokens_are_refused_and_tokens_are_stored_hashed():
    user = await sync_to_async(make_user)("owner")
    token = await sync_to_async(token_for)(user)
    row = await ApiToken.objects.aget(user=user)
    assert row.key_hash == hash_secret(token)
    assert token not in (row.key_hash, row.prefix)
    for header in (f"Token {token}x", "Bearer " + token, "Token ", "Token " + "a" * 500):
        response = await AsyncClient().get("/api/workshops/", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert error(response) == "not_authenticated"
    response = await AsyncClient().get("/api/workshops/", headers=auth(token))
    assert response.status_code == 200


async def test_a_change_with_the_login_cookie_needs_the_csrf_token():
    user = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(user)
    client = AsyncClient(enforce_csrf_checks=True)
    await sync_to_async(client.force_login)(user)
    response = await client.delete(f"/api/workshops/{workshop.pk}/")
    assert response.status_code == 403
    assert error(response) == "csrf_failed"
    assert await Workshop.objects.filter(pk=workshop.pk, ended_at__isnull=True).aexists()
    # Reading needs no CSRF token.
    assert (await client.get(f"/api/workshops/{workshop.pk}/")).status_code == 200


def test_the_instructor_command_makes_an_instructor_whose_token_works(capsys):
    call_command("instructor", "teacher", "--password", PASSWORD)
    token = capsys.readouterr().out.strip()
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.get(username="teacher")
    assert user.has_perm("workshops.instruct")
    assert Client().get("/api/workshops/", headers=auth(token)).status_code == 200
    login = Client().post("/accounts/login/", {"username": "teacher", "password": PASSWORD})
    assert login.status_code == 302
    # Run again: a second token, the first still valid.
    call_command("instructor", "teacher")
    second = capsys.readouterr().out.strip()
    assert second != token
    assert Client().get("/api/workshops/", headers=auth(token)).status_code == 200


def test_failed_logins_are_throttled_per_user_name_and_address(settings):
    from django.contrib.auth import get_user_model
    from django.test import Client

    get_user_model().objects.create_user("teacher", password=PASSWORD)
    client = Client()
    wrong = {"username": "teacher", "password": "wrong"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/accounts/login/", wrong)
        assert response.status_code == 200  # the form again, with its error
        assert b"did not match" in response.content
    assert client.post("/accounts/login/", wrong).status_code == 429
    # Now even the right password is refused, for the cool-off.
    response = client.post("/accounts/login/", {"username": "teacher", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
    # Another user name from the same address is not locked out.
    get_user_model().objects.create_user("other", password=PASSWORD)
    response = client.post("/accounts/login/", {"username": "other", "password": PASSWORD})
    assert response.status_code == 302


# --- creating -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": "", "seats": 2}, "title"),
        ({"title": "x", "seats": 0}, "seats"),
        ({"title": "x", "seats": 100000}, "seats"),
        ({"title": "x", "seats": "3"}, "seats"),
        ({"title": "x", "seats": 2, "nodes_per_seat": 0}, "nodes_per_seat"),
        ({"title": "x", "seats": 2, "nodes_per_seat": 99}, "nodes_per_seat"),
        ({"title": "x", "seats": 2, "template": "9-managers"}, "template"),
        ({"title": "x", "seats": 2, "template": "5-managers", "nodes_per_seat": 2}, "not both"),
        ({"title": "x", "seats": 2, "image": "alpine"}, "image"),
        ({"title": "x", "seats": 2, "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ({"title": "x", "seats": 2, "ends_at": "tomorrow"}, "ends_at"),
        ({"title": "x", "seats": 2, "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_workshop_is_refused_with_what_is_wrong(body, field):
    user = await sync_to_async(make_user)("owner")
    token = await sync_to_async(token_for)(user)
    response = await create(AsyncClient(), body, **auth(token))
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["message"]
    assert not await Workshop.objects.aexists()


async def test_a_workshop_is_created_with_its_seats_waiting_and_a_join_link():
    user = await sync_to_async(make_user)("owner")
    token = await sync_to_async(token_for)(user)
    response = await create(
        AsyncClient(),
        {"title": "Swarm 101", "seats": 3, "template": "1-manager-1-worker"},
        **auth(token),
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["join_url"].endswith(f"/w/{data['join_code']}/")
    assert [s["status"] for s in data["seats"]] == ["provisioning"] * 3
    assert data["nodes_per_seat"] == 2
    assert data["capacity"]["seats"] == 3
    assert 0 <= data["capacity"]["seats_that_fit"] <= 3
    got = await AsyncClient().get(f"/api/workshops/{data['id']}/", headers=auth(token))
    assert got.json()["join_code"] == data["join_code"]


async def test_creation_warns_when_the_installation_cannot_hold_every_seat(settings):
    settings.PWD_MAX_TOTAL_NODES = 5
    user = await sync_to_async(make_user)("owner")
    token = await sync_to_async(token_for)(user)
    response = await create(
        AsyncClient(), {"title": "Big", "seats": 4, "nodes_per_seat": 2}, **auth(token)
    )
    assert response.status_code == 201
    capacity = response.json()["capacity"]
    assert capacity["seats_that_fit"] <= 2
    assert "of your 4 seats" in capacity["warning"]


# --- joining ------------------------------------------------------------------------


async def test_join_gives_a_ready_seat_and_the_same_browser_gets_it_again():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=2)
    seats = [s async for s in workshop.seat_set.all()]
    for seat in seats:
        await sync_to_async(seat_ready)(seat)
    browser, other = AsyncClient(), AsyncClient()
    first = await join(browser, workshop.join_code.lower(), "Ada Lovelace")
    assert first.status_code == 201, first.content
    again = await join(browser, workshop.join_code, "Ada")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["trainee_name"] == "Ada Lovelace"
    second = await join(other, workshop.join_code, "Grace")
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    full = await join(AsyncClient(), workshop.join_code, "Late")
    assert full.status_code == 409
    assert error(full) == "workshop_full"
    assert await Seat.objects.filter(workshop=workshop, status="taken").acount() == 2


async def test_join_while_seats_are_being_made_says_when_to_try_again():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    response = await join(AsyncClient(), workshop.join_code)
    assert response.status_code == 503
    assert error(response) == "seats_not_ready"
    assert int(response["Retry-After"]) > 0


@pytest.mark.parametrize("name", ["", "   ", "x" * 81, 42, None, "bell\x07"])
async def test_join_with_a_bad_name_changes_nothing(name):
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    await sync_to_async(seat_ready)(await workshop.seat_set.afirst())
    response = await join(AsyncClient(), workshop.join_code, name)
    assert response.status_code == 400
    assert error(response) == "invalid_name"
    assert await Seat.objects.filter(status="ready").acount() == 1


@pytest.mark.parametrize("code", ["NOPE42", "ÄÖÜ", "a" * 200, "AB CD"])
async def test_an_unknown_join_code_is_404(code):
    response = await join(AsyncClient(), code)
    assert response.status_code == 404
    assert error(response) == "workshop_not_found"


async def test_an_ended_workshop_says_so():
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    await sync_to_async(seat_ready)(await workshop.seat_set.afirst())
    await Workshop.objects.filter(pk=workshop.pk).aupdate(ended_at=timezone.now())
    response = await join(AsyncClient(), workshop.join_code)
    assert response.status_code == 410
    assert error(response) == "workshop_ended"


async def test_a_seat_session_follows_the_workshop_end_not_the_idle_timeout(settings):
    settings.PWD_IDLE_TIMEOUT = 60
    owner = await sync_to_async(make_user)("owner")
    workshop = await sync_to_async(workshop_of)(owner, seats=1)
    session = await sync_to_async(seat_ready)(await workshop.seat_set.afirst())
    idle_since = timezone.now() - timedelta(minutes=30)
    await Session.objects.filter(pk=session.pk).aupdate(
        last_activity_at=idle_since, created_at=idle_since
    )
    assert await Session.objects.active().filter(pk=session.pk).aexists()
    assert not await Session.objects.expired().filter(pk=session.pk).aexists()
    await Session.objects.filter(pk=session.pk).aupdate(ends_at=timezone.now())
    assert await Session.objects.expired().filter(pk=session.pk).aexists()


async def test_extend_all_moves_the_workshop_and_every_seat(settings):
    owner = await sync_to_async(make_user)("owner")
    token = await sync_to_async(token_for)(owner)
    workshop = await sync_to_async(workshop_of)(owner, seats=2)
    sessions = [await sync_to_async(seat_ready)(s) async for s in workshop.seat_set.all()]
    response = await AsyncClient().post(
        f"/api/workshops/{workshop.pk}/extend/", headers=auth(token)
    )
    assert response.status_code == 200, response.content
    moved = workshop.ends_at + timedelta(seconds=settings.PWD_WORKSHOP_EXTEND)
    for session in sessions:
        await session.arefresh_from_db()
        assert session.ends_at == moved
    assert all(s["time_left"] > 7200 for s in response.json()["seats"])


def test_operators_see_workshops_seats_and_tokens_in_the_admin():
    from django.contrib.auth import get_user_model
    from django.test import Client

    owner = make_user("owner")
    workshop_of(owner, seats=2)
    token_for(owner)
    operator = get_user_model().objects.create_superuser("operator", password=PASSWORD)
    client = Client()
    client.force_login(operator)
    for path in (
        "/admin/workshops/workshop/",
        "/admin/workshops/seat/",
        "/admin/workshops/apitoken/",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
    assert b"Swarm 101" in client.get("/admin/workshops/workshop/").content
    # An instructor is not an operator.
    client.force_login(owner)
    assert client.get("/admin/workshops/workshop/").status_code == 302
