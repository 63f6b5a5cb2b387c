"""Schemathesis against the generated OpenAPI document, on a live server with real nodes:
every answer has a documented status, a body that fits its schema, and no 5xx.

Most cases are pointed at a live session whose node1 runs, so the operations do real
work (a node start, an exec); the rest keep the ids schemathesis drew, which name nothing.
Node starts are real DinD containers (1-3 s each), so the module has a budget of them
and a session may hold MAX_NODES; past either, adds answer 409 or point at nothing.
"""

import json

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from sessions_app.api import api
from tests.live_server import LiveServer, live_server

pytestmark = pytest.mark.docker

MAX_NODES = 2
NODE_STARTS = 10
# A drawn exec may ask for up to 600 s; a generated argv that never ends (`yes`) must
# not hold the run that long.
EXEC_TIMEOUT_CAP = 5
EXAMPLES = 10


@pytest.fixture(scope="module")
def server(tmp_path_factory, engine) -> LiveServer:
    with live_server(
        tmp_path_factory.mktemp("api-fuzz"),
        PWD_POOL_SIZE="0",
        PWD_MAX_NODES=str(MAX_NODES),
        PWD_SESSIONS_PER_IP="1000/h",
    ) as live:
        yield live


class Target:
    """The live session the cases are pointed at, made again when a case ends it."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.session_id: str | None = None
        self.node_starts = 0

    def ready(self, with_node: bool) -> str:
        """The live session's id; with node1 running if asked, while the budget lasts."""
        status, body = (404, None)
        if self.session_id:
            status, body = self.server.request("GET", f"/api/sessions/{self.session_id}/")
        if status != 200:
            status, body = self.server.request("POST", "/api/sessions/")
            assert status == 201, body
            self.session_id = body["id"]
        has_node = any(n["name"] == "node1" for n in body["nodes"])
        if with_node and not has_node and self.node_starts < NODE_STARTS:
            status, node = self.server.request("POST", f"/api/sessions/{self.session_id}/nodes/")
            assert status == 201, node
            self.node_starts += 1
        return self.session_id

    def run(self, case: schemathesis.Case) -> None:
        """Call and check ``case``, pointed at the live session and node1 unless the
        drawn id has a length divisible by three (then it names nothing)."""
        parameters = case.path_parameters or {}
        drawn = parameters.get("session_id")
        adds = case.method == "POST" and case.path.endswith("/nodes/")
        if (
            drawn is not None
            and len(str(drawn)) % 3
            and not (adds and self.node_starts >= NODE_STARTS)
        ):
            parameters["session_id"] = self.ready(with_node="name" in parameters)
            if "name" in parameters and len(str(parameters["name"])) % 3:
                parameters["name"] = "node1"
        timeout = case.body.get("timeout") if isinstance(case.body, dict) else None
        positive = case.meta is None or case.meta.generation.mode.is_positive
        if positive and isinstance(timeout, int | float) and timeout > EXEC_TIMEOUT_CAP:
            case.body["timeout"] = EXEC_TIMEOUT_CAP
        response = case.call_and_validate(base_url=self.server.url, timeout=60)
        if adds and response.status_code == 201:
            self.node_starts += 1


@pytest.fixture(scope="module")
def target(server) -> Target:
    return Target(server)


# The document the server serves, made here so that pytest can collect one test per
# operation (schemathesis's lazy from_fixture loader does not run on pytest 9);
# test_the_live_server_serves_this_document checks it is the one served.
DOCUMENT = api.get_openapi_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_server_serves_this_document(server):
    status, served = server.request("GET", "/api/schema/")

    assert status == 200
    assert served == json.loads(json.dumps(DOCUMENT))


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_fits_its_schema_and_is_no_server_error(case, target):
    target.run(case)
