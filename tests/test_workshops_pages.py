"""The workshop pages (HTML only): who sees the dashboard and a wall, the join page for a
good, a bad and an ended code, and a seat's session page showing the workshop's notices."""

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from sessions_app.models import Session
from tests.workshop_helpers import PASSWORD, make_user, seat_ready, workshop_of
from workshops.models import Seat, Workshop

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def data_of(body: str, element_id: str) -> dict:
    found = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', body)
    assert found, f"no {element_id} in the page"
    return json.loads(found.group(1))


def test_the_dashboard_sends_an_anonymous_visitor_to_the_login_page():
    response = Client().get("/workshops/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/workshops/"
    owner = make_user("owner")
    workshop = workshop_of(owner)
    response = Client().get(f"/workshops/{workshop.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_logging_in_leads_to_the_dashboard():
    make_user("teacher")
    client = Client()
    assert b'name="next"' in client.get("/accounts/login/?next=/workshops/").content
    response = client.post(
        "/accounts/login/",
        {"username": "teacher", "password": PASSWORD, "next": "/workshops/"},
        REMOTE_ADDR="127.0.0.1",
    )
    assert response.status_code == 302
    assert response["Location"] == "/workshops/"
    assert client.get("/workshops/").status_code == 200


def test_a_user_without_the_permission_gets_a_clear_403_page():
    trainee = make_user("trainee", instructor=False)
    owner = make_user("owner")
    workshop = workshop_of(owner)
    client = logged_in(trainee)
    for path in ("/workshops/", f"/workshops/{workshop.pk}/"):
        response = client.get(path)
        assert response.status_code == 403, path
        body = response.content.decode()
        assert "Only instructors run workshops" in body
        assert "manage.py instructor trainee" in body
        assert workshop.join_code not in body


def test_the_dashboard_lists_the_instructors_workshops_and_offers_the_create_form(settings):
    settings.PWD_NODE_IMAGES = ["pwd-node:latest", "pwd-node:extra"]
    owner = make_user("owner")
    mine = workshop_of(owner, title="Swarm 101")
    workshop_of(make_user("other"), title="Someone else's")
    ended = workshop_of(owner, title="Last week")
    ended.end()
    body = logged_in(owner).get("/workshops/").content.decode()
    assert f'href="/workshops/{mine.pk}/"' in body
    assert mine.join_code in body
    assert "Someone else&#x27;s" not in body
    assert "Ended workshops (1)" in body
    assert 'id="create-form"' in body
    assert 'name="csrfmiddlewaretoken"' in body  # the API checks X-CSRFToken
    assert '<option value="pwd-node:extra">' in body
    assert '<option value="1-manager-1-worker">1-manager-1-worker (2 nodes)</option>' in body
    assert "js/workshops.js" in body


def test_the_wall_is_for_its_instructors_only():
    owner = make_user("owner")
    other = make_user("other")
    workshop = workshop_of(owner, seats=3)
    response = logged_in(other).get(f"/workshops/{workshop.pk}/")
    assert response.status_code == 404
    assert workshop.join_code not in response.content.decode()
    assert logged_in(owner).get("/workshops/00000000-0000-0000-0000-000000000000/").status_code == (
        404
    )


def test_the_wall_carries_the_join_link_the_roster_and_the_csrf_token():
    owner = make_user("owner")
    workshop = workshop_of(owner, seats=3)
    seat_ready(Seat.objects.get(workshop=workshop, number=2))
    response = logged_in(owner).get(f"/workshops/{workshop.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    data = data_of(body, "wall-data")
    assert data["join_url"] == f"http://testserver/w/{workshop.join_code}/"
    assert [s["status"] for s in data["seats"]] == ["provisioning", "ready", "provisioning"]
    assert data["running"] is True
    assert data["prepare_from"] is None  # no start: seats are made from creation
    for needle in ("Message everyone", "Extend all", "End workshop", "Copy link", "Take over"):
        assert needle in body
    assert 'name="csrfmiddlewaretoken"' in body
    assert "js/wall.js" in body


def test_the_join_page_asks_a_name_for_a_good_code_in_any_case():
    workshop = workshop_of(make_user("owner"), title="Compose day")
    for code in (workshop.join_code, workshop.join_code.lower()):
        response = Client().get(f"/w/{code}/")
        assert response.status_code == 200
        body = response.content.decode()
        assert "Join Compose day" in body
        assert 'id="name"' in body
        assert f'data-code="{workshop.join_code}"' in body
        assert "Rejoin" not in body


def test_a_bad_code_gets_the_404_page_saying_no_such_workshop():
    for code in ("NOSUCH", "x" * 40, "%20"):
        response = Client().get(f"/w/{code}/")
        assert response.status_code == 404, code
        assert b"No such workshop" in response.content


def test_an_ended_workshops_join_page_says_it_has_ended():
    workshop = workshop_of(make_user("owner"), title="Yesterday")
    Workshop.objects.filter(pk=workshop.pk).update(ends_at=timezone.now() - timedelta(minutes=1))
    response = Client().get(f"/w/{workshop.join_code}/")
    assert response.status_code == 410
    body = response.content.decode()
    assert "This workshop has ended" in body
    assert 'id="join-form"' not in body


def test_the_browser_holding_a_seat_is_offered_to_rejoin_it():
    workshop = workshop_of(make_user("owner"), seats=1)
    seat_ready(Seat.objects.get(workshop=workshop))
    client = Client()
    joined = client.post(
        f"/api/workshops/join/{workshop.join_code}/",
        json.dumps({"name": "Grace"}),
        content_type="application/json",
    )
    assert joined.status_code == 201, joined.content
    body = client.get(f"/w/{workshop.join_code}/").content.decode()
    assert "This browser has seat 1 as <strong>Grace</strong>" in body
    assert ">Rejoin</button>" in body
    # Another browser is not: it would get a seat of its own (here: none is left).
    assert "Rejoin" not in Client().get(f"/w/{workshop.join_code}/").content.decode()


def test_a_seats_session_page_shows_the_workshop_and_its_message():
    workshop = workshop_of(make_user("owner"), title="Swarm 101", message="Open node2 now")
    session = seat_ready(Seat.objects.get(workshop=workshop, number=1))
    body = Client().get(session.page_path).content.decode()
    assert "<strong>Swarm 101</strong>" in body
    assert 'id="workshop-message"' in body
    assert "Open node2 now" in body
    assert 'id="instructor-notice"' in body
    assert 'role="status" aria-live="polite"' in body
    assert data_of(body, "workshop-data") == {
        "title": "Swarm 101",
        "message": "Open node2 now",
        "ends_at": workshop.ends_at.isoformat(),
        "seat": 1,
    }
    assert "js/notices.js" in body


def test_a_plain_session_page_has_no_workshop_notices():
    body = Client().get(Session.objects.create().page_path).content.decode()
    assert "workshop-notices" not in body
    assert "notices.js" not in body


def test_the_wall_of_a_later_workshop_says_when_its_seats_are_made(settings):
    settings.PWD_WORKSHOP_PREPARE_BEFORE = 1800
    owner = make_user("owner")
    starts_at = timezone.now() + timedelta(hours=6)
    workshop = workshop_of(owner, starts_at=starts_at, ends_at=starts_at + timedelta(hours=2))
    body = logged_in(owner).get(f"/workshops/{workshop.pk}/").content.decode()
    assert data_of(body, "wall-data")["prepare_from"] == (
        (starts_at - timedelta(minutes=30)).isoformat()
    )
