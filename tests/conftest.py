"""Shared fixtures. Tests that need the real engine use the ``engine`` fixture.

Each test run labels what it creates with its own ``pwd.instance`` so it never touches
another run's (or a live server's) objects, and removes all of it at the end. With
CI=true a missing prerequisite fails the test instead of skipping it.
"""

import contextlib
import os
import uuid

import pytest
from django.conf import settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RUN_INSTANCE = f"pwdtest-{uuid.uuid4().hex[:8]}"


def missing(reason: str) -> None:
    """Fail in CI, skip elsewhere: a prerequisite is not there."""
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _run_instance():
    settings.PWD_INSTANCE = RUN_INSTANCE
    return RUN_INSTANCE


@pytest.fixture(scope="session")
def engine(_run_instance):
    """The engine package, once the engine and the node image are known to be there."""
    from sessions_app import engine

    if not engine.ping():
        missing("no Docker engine answers (make test starts one)")
    if not engine.image_exists(settings.PWD_NODE_IMAGE):
        missing(f"the node image {settings.PWD_NODE_IMAGE} is missing (make test builds it)")
    yield engine
    _remove_everything(engine)


@pytest.fixture
async def sessions(engine):
    """API sessions through Django's test client, ended at the end of the test."""
    from django.test import AsyncClient

    from tests.api_helpers import Sessions

    helper = Sessions(AsyncClient())
    yield helper
    await helper.close()


@pytest.fixture
def keeper(engine, settings):
    """A pool keeper of size 1; its pool containers are removed at the end."""
    from sessions_app.keeper import Keeper

    settings.PWD_POOL_SIZE = 1
    keeper = Keeper(size=1)
    yield keeper
    close_keeper(engine, keeper)


def close_keeper(engine, keeper) -> None:
    """Stop a test's keeper and remove the pool containers it left."""
    keeper.close()
    for container in engine.list_objects().containers:
        if container["Labels"].get(engine.LABEL_ROLE) == engine.ROLE_POOL:
            engine.remove_node(container["Id"])


@pytest.fixture
def session(engine):
    """A session row with its network on the engine, removed at the end."""
    from sessions_app.models import Session

    session = Session.objects.create()
    session.network_name, session.network_id = engine.create_session_network(session.id)
    session.save()
    yield session
    from tests.api_helpers import remove_session_objects

    remove_session_objects(session.id)


def _remove_everything(engine) -> None:
    try:
        objects = engine.list_objects()
    except engine.EngineError:
        return
    for container in objects.containers:
        engine.remove_node(container["Id"])
    for volume in engine.list_objects().volumes:
        engine.remove_volume(volume["Name"])
    for network in objects.networks:
        with contextlib.suppress(engine.EngineError):
            engine.remove_network(network["Id"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed engine test, print what a human needs: the run's containers and logs."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "engine" not in item.fixturenames:
        return
    from sessions_app import engine

    try:
        containers = engine.list_objects().containers
    except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the failure
        report.sections.append(("engine state", f"could not list containers: {exc}"))
        return
    text = "\n\n".join(
        f"{c['Id'][:12]} {c.get('Labels')}\n{engine.describe(c['Id'])}" for c in containers
    )
    report.sections.append(("engine state", text or "no containers of this run"))
