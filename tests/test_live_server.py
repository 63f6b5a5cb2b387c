"""pwd_site.testing: the live server the suite, the fault tests and the bench share starts
on a free port with its own database and label, comes back after a crash on the same
port, and leaves nothing behind: no process, no engine object, no temp file."""

import json
import os
import subprocess
import urllib.error
import urllib.request

import pytest

from pwd_site.testing import PYTHON, ROOT, Instance, LiveServer, live_server

pytestmark = pytest.mark.docker


def listed(instance: str) -> dict:
    """What the engine holds labelled ``instance``, asked by a process of its own."""
    env = {**os.environ, "PWD_INSTANCE": instance, "DJANGO_SETTINGS_MODULE": "pwd_site.settings"}
    done = subprocess.run(
        [PYTHON, "-m", "pwd_site.instance_objects", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_it_removes_every_object_process_and_temp_file_it_made(engine):
    with live_server(PWD_POOL_SIZE="1") as server:
        keeper = server.spawn("pool", ["manage.py", "pool", "--interval", "0.2"])
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        status, node = server.request("POST", f"/api/sessions/{session['id']}/nodes/")
        assert status == 201, node
        made = server.objects()
        name, directory = server.instance.name, server.instance.directory
        daphne = server.daphne
        assert made.names(session["id"]), made  # its container, volume and network
        assert made.networks
        assert directory.joinpath("db.sqlite3").exists()
        # The session is left running on purpose: the clean-up must take it away.

    assert name.startswith("pwdlive-")
    assert (daphne.running(), keeper.running()) == (False, False)
    assert listed(name) == {"containers": [], "networks": [], "volumes": []}
    assert not directory.exists()


def test_a_killed_server_comes_back_on_the_same_port_with_its_sessions(engine, tmp_path):
    with live_server(tmp_path, PWD_POOL_SIZE="0") as server:
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        url, first = server.url, server.daphne.pid

        server.kill()
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(server.url + "/healthz", timeout=5)
        server.start()
        status, again = server.request("GET", f"/api/sessions/{session['id']}/")
        server.restart()
        after_restart, _ = server.request("GET", f"/api/sessions/{session['id']}/")

    assert server.url == url
    assert server.daphne.pid != first
    assert (status, again["id"]) == (200, session["id"])
    assert after_restart == 200
    # A given directory is the caller's: its database and logs stay for a post-mortem.
    assert (tmp_path / "db.sqlite3").exists()
    assert "GET /healthz" in server.log.read_text()


def test_two_servers_have_their_own_database_and_label(engine, tmp_path):
    with (
        live_server(tmp_path / "one", PWD_POOL_SIZE="0") as one,
        live_server(tmp_path / "two", PWD_POOL_SIZE="0") as two,
    ):
        status, session = one.request("POST", "/api/sessions/")
        assert status == 201, session
        elsewhere, _ = two.request("GET", f"/api/sessions/{session['id']}/")
        networks = (one.objects().names(session["id"]), two.objects().names(session["id"]))
        one.request("DELETE", f"/api/sessions/{session['id']}/")

    assert one.port != two.port
    assert one.instance.name != two.instance.name
    assert one.env["DATABASE_URL"] != two.env["DATABASE_URL"]
    assert elsewhere == 404
    assert networks[0]
    assert networks[1] == []


def test_a_failure_in_the_block_prints_the_log_and_the_engine_and_still_cleans_up(engine, capsys):
    servers = []

    def fail_in_the_block() -> None:
        with live_server(PWD_POOL_SIZE="0") as server:
            servers.append(server)
            status, session = server.request("POST", "/api/sessions/")
            assert status == 201, session
            raise AssertionError("on purpose")

    with pytest.raises(AssertionError, match="on purpose"):
        fail_in_the_block()

    printed = capsys.readouterr().err
    name = servers[0].instance.name
    on_engine = printed.split(f"--- on the engine as {name}\n", 1)[1].splitlines()
    assert '"POST /api/sessions/' in printed  # daphne's access log
    assert [line for line in on_engine if line.startswith(f"{name}-")]  # the session network
    assert listed(name) == {"containers": [], "networks": [], "volumes": []}


def test_a_server_that_cannot_start_says_why_and_leaves_no_process(tmp_path):
    with Instance(tmp_path) as instance:
        server = LiveServer(instance, PWD_MAX_BODY="not a size")
        with pytest.raises(RuntimeError, match="daphne did not start") as failed:
            server.start()

    assert "PWD_MAX_BODY" in str(failed.value)
    assert not server.daphne.running()


def test_an_instance_is_labelled_with_a_value_of_its_own(tmp_path):
    with pytest.raises(ValueError, match="a value of its own"):
        Instance(tmp_path, {"PWD_INSTANCE": "pwd"})
