"""docker-compose.yml describes the production shape and its build contexts exist."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOCKET = "/var/run/docker.sock"


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_parses_and_has_the_production_services():
    services = compose()["services"]
    assert {"web", "reaper", "redis", "postgres"} <= set(services)
    assert services["reaper"]["command"][-1] == "reap"


def test_every_build_context_and_dockerfile_exists():
    for name, service in compose()["services"].items():
        build = service.get("build")
        if not build:
            continue
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_only_engine_drivers_get_the_docker_socket():
    for name, service in compose()["services"].items():
        mounts = " ".join(str(volume) for volume in service.get("volumes", []))
        if name in {"web", "reaper", "pool", "workshops"}:
            assert SOCKET in mounts, name
        else:
            assert SOCKET not in mounts, name


def test_the_app_uses_postgres_and_redis():
    environment = compose()["services"]["web"]["environment"]
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert environment["REDIS_URL"].startswith("redis://")


def test_the_app_image_uses_the_same_base_fallback_as_the_node_image():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=debian:trixie-slim" in dockerfile
    assert "--app" in (ROOT / "node-image" / "build.sh").read_text()
