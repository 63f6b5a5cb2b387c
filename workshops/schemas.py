"""The workshop API's bodies and answers (the OpenAPI document is made from them)."""

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Schema
from pydantic import ConfigDict, StrictInt, StrictStr

from sessions_app import schemas


class NewWorkshop(Schema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"title": "Swarm 101", "seats": 30, "template": "1-manager-1-worker"}]
        },
    )

    title: StrictStr = Field(description="1 to 200 characters")
    seats: StrictInt = Field(description="1 to PWD_WORKSHOP_MAX_SEATS")
    nodes_per_seat: StrictInt | None = Field(
        None, description="Plain nodes per seat (1 to PWD_MAX_NODES); or give template"
    )
    template: StrictStr | None = Field(
        None, description="A swarm template (see POST /api/sessions/{id}/setup/)"
    )
    image: Any = Field(None, description="One of PWD_NODE_IMAGES; default PWD_NODE_IMAGE")
    starts_at: datetime | None = Field(
        None,
        description="Seats are made PWD_WORKSHOP_PREPARE_BEFORE ahead of it; null: from now",
    )
    ends_at: datetime | None = Field(None, description="Default: two hours after the start")


class SeatNode(Schema):
    name: str
    hostname: str
    status: Literal["starting", "running", "gone"]


class Seat(Schema):
    number: int
    status: Literal["provisioning", "ready", "taken", "failed"]
    trainee_name: str = Field(description="Empty until a trainee takes the seat")
    nodes: list[SeatNode]
    last_activity_at: datetime | None
    time_left: int = Field(description="Seconds until the seat's session ends")
    error: str = Field(description="Why making the seat failed, when it did")
    attempts: int


class Capacity(Schema):
    seats_that_fit: int
    seats: int
    warning: str = Field(
        description='Empty when every seat fits, else "this ... can hold 18 of your 30 seats"'
    )


class Workshop(Schema):
    id: str
    title: str
    join_code: str
    join_url: str
    dashboard_url: str
    seats: list[Seat]
    nodes_per_seat: int
    template: str
    image: str
    starts_at: datetime | None
    ends_at: datetime
    ended: bool
    message: str
    capacity: Capacity | None = Field(None, description="Only in the answer to creation")


class WorkshopSummary(Schema):
    id: str
    title: str
    join_code: str
    seats: int
    ends_at: datetime
    ended: bool


class Join(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Any = Field(None, description="The trainee's name, as the instructor sees it")


class Message(Schema):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="Shown on every trainee's page; empty clears it")


class Sent(Schema):
    sent: int = Field(description="Trainees' sessions the message went to")


class JoinedSeat(schemas.Session):
    seat: int
    workshop: str = Field(description="The workshop's title")
    trainee_name: str
