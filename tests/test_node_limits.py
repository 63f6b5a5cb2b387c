"""Nodes carry the configured limits, enforced by the engine (seen from inside too)."""

import pytest


@pytest.fixture(scope="module")
def node(engine):
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    yield handle
    engine.remove_node(handle.container_id)


def test_the_engine_enforces_memory_cpu_pids_and_log_limits(engine, node, settings):
    host = engine.client().api.inspect_container(node.container_id)["HostConfig"]
    assert host["Memory"] == settings.PWD_NODE_MEMORY
    assert host["MemorySwap"] == settings.PWD_NODE_MEMORY + settings.PWD_NODE_SWAP
    assert host["NanoCpus"] == int(settings.PWD_NODE_CPUS * 1e9)
    assert host["PidsLimit"] == settings.PWD_NODE_PIDS
    assert host["LogConfig"]["Config"]["max-size"] == str(settings.PWD_NODE_LOG_SIZE)


def test_the_node_sees_its_memory_limit(engine, node, settings):
    result = engine.exec_in_node(
        node.container_id,
        [
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null"
            " || cat /sys/fs/cgroup/memory.max",
        ],
        timeout=10,
        max_output=1024,
    )
    assert int(result.output.strip()) == settings.PWD_NODE_MEMORY


def test_module_loading_is_not_granted(engine, node):
    result = engine.exec_in_node(
        node.container_id,
        ["sh", "-c", "grep CapEff /proc/1/status"],
        timeout=10,
        max_output=1024,
    )
    cap_eff = int(result.output.split()[1], 16)
    cap_sys_module = 16
    assert not cap_eff & (1 << cap_sys_module)


def test_module_loading_is_dropped_in_the_host_config(engine, node):
    host = engine.client().api.inspect_container(node.container_id)["HostConfig"]
    dropped = {cap.upper().removeprefix("CAP_") for cap in host.get("CapDrop") or []}
    assert "SYS_MODULE" in dropped


def test_the_inner_docker_data_is_a_volume_and_the_host_socket_is_not_mounted(engine, node):
    mounts = engine.client().api.inspect_container(node.container_id)["Mounts"]
    inner = [m for m in mounts if m["Destination"] == "/var/lib/docker"]
    assert [m["Type"] for m in inner] == ["volume"]
    assert not [m for m in mounts if "docker.sock" in (m.get("Source") or "")]
