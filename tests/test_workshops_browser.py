"""A workshop in two headless Chromium contexts against a real daphne, its provisioner
(``manage.py workshops``) and real nodes: the instructor creates it from the dashboard, a
trainee joins and types, the wall's thumbnail shows it, the instructor takes over and
types into the trainee's shell (the trainee's page says so), and the watcher's window
never sizes the trainee's terminal. Then message, extend and end reach the trainee.

With PWD_DOC_SCREENSHOTS=docs/images the screenshots go there (the docs' pictures);
otherwise to test-artifacts/.
"""

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.live_server import live_server
from tests.test_files_browser import _in_node
from tests.test_terminal_browser import (
    _screen_text,
    browser,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.browser, pytest.mark.docker]

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long instructor password"
INSTRUCTOR_VIEW = {"width": 1400, "height": 900}
TRAINEE_VIEW = {"width": 1000, "height": 640}
MAX_PNG = 200_000


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("workshops-browser")) as live:
        made = live.manage("instructor", "teacher", "--password", PASSWORD)
        assert made.returncode == 0, made.stderr
        live.spawn("workshops", ["manage.py", "workshops", "--interval", "0.5"])
        yield live
        print(live.log.read_text()[-4000:])


def shoot(page, name: str) -> None:
    """A screenshot, palette-reduced to stay small."""
    from PIL import Image

    folder = Path(os.environ.get("PWD_DOC_SCREENSHOTS") or ROOT / "test-artifacts")
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workshops-{name}.png"
    page.screenshot(path=str(path))
    for colours in (128, 64, 32):
        with Image.open(path) as image:
            small = image.convert("RGB").quantize(colours, dither=Image.Dither.NONE)
        small.save(path, optimize=True)
        if path.stat().st_size < MAX_PNG:
            return


def until(check, within: float, every: int = 250):
    """``check()``'s first truthy answer within ``within`` seconds, else its last one."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every / 1000)


def trainee_screen(page) -> str:
    return _screen_text(page, "node1")


def trainee_size(page) -> tuple[int, int]:
    rows, cols = page.evaluate(
        '() => { const t = window.pwd.terminals.get("node1").term; return [t.rows, t.cols]; }'
    )
    return rows, cols


def exec_in(server, session_id: str, command: str) -> str:
    return _in_node(server, session_id, command)["output"]


def log_in(page, server) -> None:
    page.goto(server.url + "/workshops/")
    page.wait_for_url("**/accounts/login/?next=/workshops/")
    page.get_by_label("User name").fill("teacher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(server.url + "/workshops/")


def log_in_and_create(page, server) -> str:
    """The instructor logs in and creates a 1-seat workshop; returns its wall's URL."""
    log_in(page, server)
    page.get_by_label("Title", exact=True).fill("Docker basics")
    page.get_by_label("Seats", exact=True).fill("1")
    shoot(page, "dashboard")
    page.get_by_role("button", name="Create workshop").click()
    # Straight to the wall, or first the capacity warning with a link to it.
    page.wait_for_function(
        "() => /\\/workshops\\/[0-9a-f-]{36}\\/$/.test(location.pathname)"
        " || !document.getElementById('create-warning').hidden",
        timeout=30_000,
    )
    if "/accounts/" not in page.url and page.locator("#create-warning").is_visible():
        page.get_by_role("link", name="Open the wall").click()
    page.wait_for_url(re.compile(r".*/workshops/[0-9a-f-]{36}/$"))
    return page.url


def test_the_wall_watches_a_trainee_live_and_take_over_types_into_their_shell(
    server,
    browser,  # noqa: F811
):
    problems: list[str] = []
    teacher = browser.new_context(viewport=INSTRUCTOR_VIEW)
    trainee = browser.new_context(viewport=TRAINEE_VIEW)
    wall = teacher.new_page()
    wall.on("pageerror", lambda error: problems.append(f"wall: {error}"))
    log_in_and_create(wall, server)
    card = wall.locator('.seat-card[data-seat="1"]')
    shoot(wall, "provisioning")
    card.locator(".badge.ready").wait_for(timeout=180_000)
    assert wall.locator("#count-ready").inner_text() == "1"
    join_url = wall.locator("#join-link").get_attribute("href")
    assert re.search(r"/w/[A-Z0-9]{6}/$", join_url), join_url

    page = trainee.new_page()
    page.on("pageerror", lambda error: problems.append(f"trainee: {error}"))
    page.goto(join_url)
    page.get_by_label("Your name, as the instructor will see it").fill("Ada Lovelace")
    shoot(page, "join")
    page.get_by_role("button", name="Join").click()
    page.wait_for_url("**/p/*/", timeout=30_000)
    session_id = page.evaluate("JSON.parse(document.getElementById('session-data').textContent).id")
    assert until(lambda: "[node1]" in trainee_screen(page), 60), trainee_screen(page)[-500:]
    page.locator(".terminal-host:not([hidden]) .xterm").click()
    page.keyboard.type("echo hello-wall\n")
    assert until(lambda: "\nhello-wall" in trainee_screen(page), 30)

    # The wall: the seat is taken by Ada, and its thumbnail shows what she typed.
    thumb = card.locator(".thumb")
    assert until(lambda: "hello-wall" in thumb.inner_text(), 30), thumb.inner_text()
    assert card.locator(".seat-name").inner_text() == "Ada Lovelace"
    assert until(lambda: card.locator(".badge").inner_text() == "Taken", 10)
    shoot(wall, "wall")
    card.get_by_role("button", name="Enlarge").click()
    assert "hello-wall" in thumb.inner_text()
    shoot(wall, "enlarged")
    card.get_by_role("button", name="Shrink").click()

    # The seat's full terminal, read-only: what the watcher types goes nowhere.
    card.locator(".seat-open").click()
    overlay = wall.locator("#seat-overlay")
    rows = overlay.locator(".terminal-host:not([hidden]) .xterm-rows")
    assert until(lambda: "hello-wall" in rows.inner_text(), 30), rows.inner_text()
    overlay.locator(".terminal-host:not([hidden]) .xterm").click()
    wall.keyboard.type("echo watcher-typed\n")

    # Take over: the server confirms, then keys go to the trainee's shell.
    overlay.get_by_role("button", name="Take over").click()
    wall.wait_for_selector('#takeover[aria-pressed="true"]', timeout=10_000)
    overlay.locator(".terminal-host:not([hidden]) .xterm").click()
    wall.keyboard.type("echo taken > /tmp/t; stty size > /tmp/size\n")
    notice = page.locator("#instructor-notice")
    assert until(lambda: "The instructor is typing in node1" in notice.inner_text(), 15), (
        notice.inner_text()
    )
    shoot(wall, "takeover")
    shoot(page, "trainee")
    assert until(lambda: exec_in(server, session_id, "cat /tmp/t 2>/dev/null") == "taken\n", 15)
    assert "watcher-typed" not in trainee_screen(page)

    # Even typed by the instructor, stty reports the trainee's size, not the watcher's.
    rows_cols = trainee_size(page)
    watcher = wall.evaluate(
        "() => [...document.querySelectorAll('#seat-overlay .xterm-rows > div')].length"
    )
    size = until(lambda: exec_in(server, session_id, "cat /tmp/size 2>/dev/null").split(), 15)
    assert tuple(int(n) for n in size) == rows_cols, (size, rows_cols, watcher)
    overlay.get_by_role("button", name="Release").click()
    assert until(lambda: "released node1" in notice.inner_text(), 15), notice.inner_text()
    page.locator(".terminal-host:not([hidden]) .xterm").click()
    page.keyboard.type("stty size\n")
    expected = f"\n{rows_cols[0]} {rows_cols[1]}"
    assert until(lambda: expected in trainee_screen(page), 15), trainee_screen(page)[-400:]
    overlay.get_by_role("button", name="Close").click()

    # Message everyone, extend all: the trainee's page shows both.
    wall.get_by_role("button", name="Message everyone").click()
    wall.locator("#message-text").fill("Break until 11:00")
    wall.get_by_role("button", name="Send").click()
    message = page.locator("#workshop-message-text")
    assert until(lambda: message.inner_text() == "Break until 11:00", 15)
    before = page.get_attribute("#workshop-end-time", "datetime")
    wall.get_by_role("button", name="Extend all").click()
    assert until(lambda: page.get_attribute("#workshop-end-time", "datetime") != before, 15)
    assert "Extended" in wall.locator("#wall-status").inner_text()

    # End, after confirming: the trainee's session ends.
    wall.get_by_role("button", name="End workshop").click()
    shoot(wall, "end")
    wall.locator("#end-dialog").get_by_role("button", name="End workshop").click()
    wall.locator("#wall-ended").wait_for(timeout=30_000)
    page.locator("#ended").wait_for(timeout=30_000)
    assert not problems, problems
    teacher.close()
    trainee.close()


def later_workshop(server, seats: int) -> tuple[str, str]:
    """A workshop of ``seats`` starting in 6 hours: the provisioner leaves its seats be."""
    made = server.python(
        "from datetime import timedelta\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.utils import timezone\n"
        "from workshops import services\n"
        "now = timezone.now()\n"
        f"plan = services.plan_of({{'title': 'Later', 'seats': {seats},"
        " 'starts_at': now + timedelta(hours=6), 'ends_at': now + timedelta(hours=8)})\n"
        "w = services.create(get_user_model().objects.get(username='teacher'), plan)\n"
        "print(w.pk, w.join_code)"
    )
    assert made.returncode == 0, made.stderr
    workshop_id, code = made.stdout.split()
    return workshop_id, code


def test_the_wall_asks_screens_for_the_seats_on_screen_only_and_a_trainee_waits_for_a_seat(
    server,
    browser,  # noqa: F811
):
    workshop_id, code = later_workshop(server, 30)
    problems: list[str] = []
    teacher = browser.new_context(viewport={"width": 1400, "height": 700})
    wall = teacher.new_page()
    wall.on("pageerror", lambda error: problems.append(f"wall: {error}"))
    sent: list[list[int]] = []

    def on_socket(socket) -> None:
        if socket.url.endswith("/wall/"):
            socket.on("framesent", lambda payload: sent.append(json.loads(payload)["seats"]))

    wall.on("websocket", on_socket)
    log_in(wall, server)
    wall.goto(f"{server.url}/workshops/{workshop_id}/")
    assert until(lambda: wall.locator(".seat-card").count() == 30, 15)
    # Seats not made until 30 minutes before the start: the header says from when.
    assert "Seats are made from" in wall.locator("#progress-text").inner_text()
    shoot(wall, "thirty")

    def told(check):
        def newest():
            wall.wait_for_timeout(100)  # Playwright hands events over only inside its calls
            return next((seats for seats in reversed(sent) if check(seats)), None)

        return until(newest, 15)

    top = told(lambda seats: 1 in seats)
    assert top, sent
    assert 30 not in top, top
    assert len(top) < 30, top
    wall.locator('.seat-card[data-seat="30"]').scroll_into_view_if_needed()
    bottom = told(lambda seats: 30 in seats)
    assert bottom, sent
    assert 1 not in bottom, bottom

    # More seats than the installation holds: the instructor is told at creation.
    wall.goto(f"{server.url}/workshops/")
    later = wall.evaluate(
        """() => {
            const d = new Date(Date.now() + 6 * 3600 * 1000);
            const p = (n) => String(n).padStart(2, "0");
            const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
            return `${day}T${p(d.getHours())}:${p(d.getMinutes())}`;
        }"""
    )
    wall.get_by_label("Title", exact=True).fill("Too big")
    wall.get_by_label("Seats", exact=True).fill("200")
    wall.get_by_role("radio", name="A swarm template:").check()
    wall.get_by_label("Swarm template", exact=True).select_option("5-managers")
    wall.locator("#starts_at").fill(later)
    wall.get_by_role("button", name="Create workshop").click()
    warning = wall.locator("#create-warning")
    warning.wait_for(timeout=30_000)
    assert re.search(r"can hold \d+ of your 200 seats \(5 nodes each\)", warning.inner_text())
    shoot(wall, "capacity")
    wall.get_by_role("link", name="Open the wall").click()
    wall.wait_for_url(re.compile(r".*/workshops/[0-9a-f-]{36}/$"))
    assert wall.locator("h1").inner_text() == "Too big"

    # A trainee arriving early is told the seat is being made, and the page keeps asking.
    trainee = browser.new_context(viewport=TRAINEE_VIEW)
    page = trainee.new_page()
    page.on("pageerror", lambda error: problems.append(f"trainee: {error}"))
    page.goto(f"{server.url}/w/{code.lower()}/")
    page.get_by_label("Your name, as the instructor will see it").fill("Early Bird")
    page.get_by_role("button", name="Join").click()
    status = page.locator("#join-status")
    assert until(lambda: "Your seat is being made" in status.inner_text(), 15), status.inner_text()
    assert page.url.endswith(f"/w/{code.lower()}/")
    assert not problems, problems
    teacher.close()
    trainee.close()
