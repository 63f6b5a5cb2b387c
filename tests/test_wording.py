"""How the pages word durations, waits and sizes (front/wording.py)."""

import pytest
from django.test import Client

from front import wording
from sessions_app.models import Session


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (4 * 3600, "4 hours"),
        (3600, "1 hour"),
        (30 * 60, "30 minutes"),
        (60, "1 minute"),
        (90, "90 seconds"),
        (5400, "90 minutes"),
        (1, "1 second"),
    ],
)
def test_a_duration_is_worded_in_its_largest_whole_unit(seconds, words):
    assert wording.duration(seconds) == words


@pytest.mark.parametrize(
    ("seconds", "words"), [(1, "a minute"), (60, "a minute"), (90, "a minute"), (91, "2 minutes")]
)
def test_a_wait_is_rounded_to_minutes(seconds, words):
    assert wording.wait(seconds) == words


@pytest.mark.parametrize(
    ("count", "words"),
    [(1024**3, "1 GiB"), (1536 * 1024**2, "1.5 GiB"), (512 * 1024**2, "512 MiB"), (10, "10 bytes")],
)
def test_a_size_is_worded_in_powers_of_1024(count, words):
    assert wording.size(count) == words


@pytest.mark.django_db
def test_the_landing_page_words_the_limits(settings):
    settings.PWD_SESSION_LIFETIME = 4 * 3600
    settings.PWD_IDLE_TIMEOUT = 30 * 60
    settings.PWD_NODE_MEMORY = 1024**3

    body = Client().get("/").content.decode()

    assert "after 4 hours or 30 minutes without activity" in body
    assert "1 GiB memory" in body


@pytest.mark.django_db
def test_the_session_page_leaves_out_limits_that_are_off(settings):
    settings.PWD_NODE_SWAP = 0
    settings.PWD_NODE_DISK = 0
    body = Client().get(Session.objects.create().page_path).content.decode()

    assert "swap" not in body
    assert " disk" not in body
