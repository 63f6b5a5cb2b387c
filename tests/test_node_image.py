"""The node image: a DinD node starts with the detected profile and its inner engine
runs a container from an image made inside the node, without any registry."""

import pytest


@pytest.fixture
def node(engine):
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    yield handle
    engine.remove_node(handle.container_id)


def test_profile_is_detected_and_usable(engine):
    profile = engine.profile()
    assert profile.name in {"userns", "sysbox", "privileged", "caps"}
    assert "SYS_MODULE" in profile.cap_drop


def test_inner_docker_runs_a_container_from_a_local_image(engine, node):
    result = engine.exec_in_node(
        node.container_id,
        ["sh", "-c", "pwd-busybox-image >/dev/null && docker run --rm busybox echo hello-inner"],
        timeout=120,
        max_output=65536,
    )
    assert result.exit_code == 0, result.output
    assert "hello-inner" in result.output


def test_node_has_the_trainee_tools(engine, node):
    tools = "docker docker-compose git curl vim less ip ping ssh python3 busybox"
    result = engine.exec_in_node(
        node.container_id,
        ["bash", "-c", f"for t in {tools}; do command -v $t >/dev/null || echo missing $t; done"],
        timeout=30,
        max_output=4096,
    )
    assert result.exit_code == 0
    assert result.output == ""


def test_inner_docker_listens_on_its_unix_socket_only(engine, node):
    result = engine.exec_in_node(
        node.container_id,
        ["sh", "-c", "test -S /var/run/docker.sock && ! (ss -ltn | grep -E ':(2375|2376) ')"],
        timeout=30,
        max_output=4096,
    )
    assert result.exit_code == 0, result.output


def test_removing_a_node_removes_its_labelled_volume(engine):
    handle = engine.create_node(None, "node9", None, role=engine.ROLE_PROBE, wait=False)
    mounts = engine.client().api.inspect_container(handle.container_id)["Mounts"]
    volume = next(m["Name"] for m in mounts if m["Destination"] == "/var/lib/docker")
    listed = {v["Name"]: v for v in engine.list_objects().volumes}
    assert listed[volume]["Labels"]["pwd.role"] == engine.ROLE_PROBE

    engine.remove_node(handle.container_id)

    assert engine.container_status(handle.container_id) == "missing"
    assert volume not in {v["Name"] for v in engine.list_objects().volumes}
