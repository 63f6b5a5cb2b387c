"""The pages' scripts are ES modules that share nothing through globals: each imports
what it uses from another by name, and only the session page leaves a hook for tests."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from sessions_app.models import Session

JS = Path(__file__).resolve().parent.parent / "static" / "js"
MODULES = {"api.js", "terminal.js", "session.js", "landing.js", "ports.js", "setup.js"}
MODULES |= {"timer.js", "stats.js", "files.js"}
MODULES |= {"workshops.js", "wall.js", "seat_terminal.js", "join.js", "notices.js"}  # workshops
IMPORT = re.compile(r'^import \{([^}]*)\} from "([^"]+)";', re.M)
EXPORT = re.compile(r"^export (?:async )?(?:const|function|class) (\w+)", re.M)
# What a module may use of `window`: the browser's own, and the hook the tests read.
BROWSER_GLOBALS = {"location", "confirm"}


def _source(name: str) -> str:
    return (JS / name).read_text()


def _imports(name: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for names, source in IMPORT.findall(_source(name)):
        found.setdefault(source, set()).update(n.strip() for n in names.split(","))
    return found


def test_the_pages_have_these_modules_and_no_other():
    assert {p.name for p in JS.glob("*.js")} == MODULES


def test_each_module_imports_from_the_ones_it_uses():
    page = {"./api.js", "./terminal.js", "./ports.js", "./setup.js", "./timer.js", "./stats.js"}
    page |= {"./files.js"}
    assert set(_imports("session.js")) == page
    assert set(_imports("landing.js")) == {"./api.js"}
    assert "./api.js" in _imports("terminal.js")
    assert set(_imports("api.js")) == set()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_imported_name_is_exported(name):
    for source, names in _imports(name).items():
        if source.startswith("./"):
            assert names <= set(EXPORT.findall(_source(source[2:]))), (name, source)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_shares_state_through_window(name):
    used = set(re.findall(r"\b(?:window|globalThis|self)\.(\w+)", _source(name)))
    if name == "session.js":
        assert re.search(r"^window\.pwd = \{", _source(name), re.M)
        used.discard("pwd")
    assert used <= BROWSER_GLOBALS, used


def test_the_terminal_does_not_reach_into_the_page():
    source = _source("terminal.js")
    assert "getElementById" not in source
    assert "querySelector" not in source


@pytest.mark.django_db
def test_the_pages_load_their_scripts_as_modules():
    pages = [Client().get(p).content.decode() for p in ("/", Session.objects.create().page_path)]
    for html in pages:
        for attributes in re.findall(r"<script([^>]*)>", html):
            assert 'type="module"' in attributes or 'type="application/json"' in attributes


def test_the_api_module_gives_websocket_addresses_close_codes_and_backoff():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = f"""
        globalThis.location = {{ protocol: "https:", host: "pwd.example" }};
        const api = await import({json.dumps((JS / "api.js").as_uri())});
        const session = api.sessionApi("a/b");
        const delays = [0, 1, 5, 10].map((n) => api.backoff(n));
        console.log(JSON.stringify({{
            events: session.eventsUrl, terminal: session.terminalUrl("node1"), delays,
            close: api.CLOSE,
        }}));
    """
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)

    assert answer["events"] == "wss://pwd.example/ws/sessions/a%2Fb/events/"
    assert answer["terminal"] == "wss://pwd.example/ws/sessions/a%2Fb/nodes/node1/terminal/"
    first, second, fifth, tenth = answer["delays"]
    assert 375 <= first <= 625
    assert 750 <= second <= 1250
    assert 7500 <= fifth <= 12500
    assert 7500 <= tenth <= 12500
    assert answer["close"] == {"NORMAL": 1000, "NOT_FOUND": 4404, "GONE": 4410}
