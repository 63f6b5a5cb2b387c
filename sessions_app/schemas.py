"""The API's bodies and answers as Pydantic schemas; the OpenAPI document is made from them.

Answers are the dicts of :mod:`sessions_app.serialize` (the events send the same
shapes), validated against these schemas on the way out.
"""

from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from ninja import Field, Schema
from pydantic import ConfigDict, StrictStr

from sessions_app.engine import EXEC_MAX_TIMEOUT

DEFAULT_EXEC_TIMEOUT = 30


class ErrorDetail(Schema):
    code: str = Field(examples=["node_limit_reached"])
    message: str


class Error(Schema):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class Port(Schema):
    port: int = Field(ge=1, le=65535, examples=[8080])
    url: str = Field(description="The port URL: <token>-<node>-<port>.<PWD_PORTS_DOMAIN>")


class Node(Schema):
    name: str = Field(examples=["node1"])
    hostname: str
    ip: str = Field(description="Address on the session network")
    status: Literal["starting", "running", "gone"]
    created_at: datetime
    ports: list[Port] = Field(description="Open ports: listening in the node or published")
    terminal: str = Field(description="Websocket path of the node's terminal")


class Session(Schema):
    id: str = Field(description="192 random bits, URL-safe; the credential")
    url: str = Field(description="The session page, /p/<id>/")
    created_at: datetime
    expires_at: datetime = Field(description="The earlier of the lifetime and the idle limit")
    hard_expires_at: datetime = Field(
        description="The end of the lifetime (PWD_SESSION_LIFETIME), which nothing moves"
    )
    max_nodes: int
    nodes: list[Node]


class ExecResult(Schema):
    exit_code: int | None = Field(description="null when the command timed out")
    output: str = Field(description="stdout and stderr, merged, at most PWD_EXEC_MAX_OUTPUT")
    truncated: bool
    timed_out: bool


class NewSession(Schema):
    """No fields yet; a body, if sent, must still be a JSON object."""


def _image_choices(schema: dict[str, Any]) -> None:
    # Read when the document is made, so it lists the images allowed then.
    schema.clear()
    schema.update(
        anyOf=[{"type": "string", "enum": list(settings.PWD_NODE_IMAGES)}, {"type": "null"}],
        default=None,
        description="One of PWD_NODE_IMAGES; null or left out: PWD_NODE_IMAGE.",
    )


class NewNode(Schema):
    # services.allowed_image is the one rule for images (and applies the default); the
    # schema shows it, and anything else is 400 bad_image, whatever its type.
    image: Any = Field(None, json_schema_extra=_image_choices)


class ExecRequest(Schema):
    # Strict: `true` is not a number of seconds and "9" is not one either.
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={"examples": [{"command": ["sh", "-c", "docker ps"], "timeout": 10}]},
    )

    command: list[StrictStr] = Field(
        min_length=1, description='The argv to run, e.g. ["sh", "-c", "docker ps"].'
    )
    timeout: float = Field(
        DEFAULT_EXEC_TIMEOUT,
        gt=0,
        le=EXEC_MAX_TIMEOUT,
        description="Seconds after which the command is ended in the node.",
    )
