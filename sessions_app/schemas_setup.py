"""The setup operation's body: a template's name or an explicit plan of nodes.

Everything a plan can get wrong is refused here (400 invalid_request) before any node
starts; only the session's own node limit is checked later, by the setup.
"""

from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict, StrictStr, model_validator

from sessions_app import setup
from sessions_app.setup import MANAGER, NO_ROLE, TEMPLATES, WORKER

# Limits of a plan: no session has more nodes than this, nor a node more commands. The
# strings have no limit of their own: the body's (64 KiB, sessions_app.api) bounds them.
MAX_PLAN_NODES = 32
MAX_COMMANDS = 16
MAX_ARGS = 256
MAX_TEMPLATE_LENGTH = 64

Argv = Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_ARGS)]


def _template_choices(schema: dict[str, Any]) -> None:
    # The document lists the names; another string is still read, and answered 400
    # unknown_template rather than a schema error.
    schema.clear()
    schema.update(type="string", enum=list(TEMPLATES), description="A template's name")


def _nodes_schema(schema: dict[str, Any]) -> None:
    # Left out means "not this one"; null is not a value the body may hold. The rule
    # that workers need a manager, in the document's terms: no worker, or a manager.
    branches = schema.pop("anyOf")
    schema.update(next(branch for branch in branches if branch.get("type") != "null"))
    role_is = lambda *roles: {"properties": {"role": {"enum": list(roles)}}}  # noqa: E731
    schema["anyOf"] = [
        {"items": role_is(MANAGER, NO_ROLE)},
        {"contains": {**role_is(MANAGER), "required": ["role"]}},
    ]


class PlannedNode(Schema):
    model_config = ConfigDict(strict=True, extra="forbid")

    role: Literal["manager", "worker", "none"] = Field(
        description="manager or worker: joins the swarm as that; none: stays out of it"
    )
    run: list[Argv] = Field(
        default_factory=list,
        max_length=MAX_COMMANDS,
        description="Argvs run in this node, in order, once the swarm is formed",
    )


class SetupRequest(Schema):
    """Either ``template`` or ``nodes``, not both."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"template": "3-managers-2-workers"},
                {
                    "nodes": [
                        {"role": "manager", "run": [["docker", "node", "ls"]]},
                        {"role": "worker"},
                    ]
                },
            ],
            "oneOf": [{"required": ["template"]}, {"required": ["nodes"]}],
        },
    )

    template: StrictStr | None = Field(
        None, max_length=MAX_TEMPLATE_LENGTH, json_schema_extra=_template_choices
    )
    nodes: list[PlannedNode] | None = Field(
        None,
        min_length=1,
        max_length=MAX_PLAN_NODES,
        json_schema_extra=_nodes_schema,
        description="The nodes, node1 first; workers need a manager",
    )

    @model_validator(mode="after")
    def _one_of_them(self) -> "SetupRequest":
        given = [name for name in ("template", "nodes") if getattr(self, name) is not None]
        if len(given) != 1 or len(self.model_fields_set & {"template", "nodes"}) != 1:
            raise ValueError("give either a template or nodes")
        roles = [node.role for node in self.nodes or []]
        if WORKER in roles and MANAGER not in roles:
            raise ValueError("a plan with workers needs a manager")
        return self

    def plan(self) -> list[setup.PlannedNode]:
        """The nodes to make; BadRequest unknown_template for a name no template has."""
        if self.template is not None:
            return setup.template_plan(self.template)
        return [
            setup.PlannedNode(node.role, tuple(tuple(argv) for argv in node.run))
            for node in self.nodes or []
        ]
