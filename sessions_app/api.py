"""The API's plumbing: the django-ninja instance, JSON body parsing and the JSON errors.

Operations are ``async def`` (sessions_app/views.py): ninja awaits them on the event
loop, so a slow node start or a 30 s exec waits on the engine's pool and holds no
request thread. The OpenAPI document (/api/schema/) is made from the operations and
their schemas, and the interactive docs (/api/docs/) load ninja's own static files.
"""

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Swagger
from ninja.errors import HttpError, ValidationError
from ninja.parser import Parser

from metrics import api as capacity_api
from sessions_app import engine, views, views_files, views_session_time, views_setup
from sessions_app.errors import ApiError, BadRequest, PayloadTooLarge, error_response
from workshops import api as workshops_api

log = logging.getLogger(__name__)

# The API takes small JSON documents only; the largest is an exec command line.
MAX_BODY_BYTES = 64 * 1024

DESCRIPTION = (
    "Sessions of Docker-in-Docker nodes on a private overlay network. The session id is "
    "the credential: whoever knows it may use the session. Every call on a session counts "
    'as activity on it. Errors are always JSON `{"error": {"code", "message"}}`; '
    "docs/api.md tells the codes."
)


class JsonObjectParser(Parser):
    """Bodies are JSON objects of at most MAX_BODY_BYTES; a blank body is ``{}``."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        body = request.body
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"The body is larger than {MAX_BODY_BYTES} bytes.")
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("The body is not valid JSON.", "invalid_json") from None
        except RecursionError:
            raise BadRequest("The body is JSON nested too deeply.", "invalid_json") from None
        if not isinstance(data, dict):
            raise BadRequest("The body must be a JSON object.", "invalid_request")
        return data


def _on_the_loop(view: Callable[..., HttpResponse]) -> Callable[..., Any]:
    """The schema and docs views as async views: they only render (no database, no
    I/O), so a thread for each would cost more than the work."""

    @functools.wraps(view)
    async def serve(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return view(request, *args, **kwargs)

    return serve


class Api(NinjaAPI):
    """Makes the OpenAPI document once (it takes tens of milliseconds) for each list of
    allowed images, so serving it does not hold up the event loop."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._documents: dict[tuple[Any, ...], Any] = {}

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> Any:
        key = (path_prefix, tuple(sorted((path_params or {}).items())), *settings.PWD_NODE_IMAGES)
        if key not in self._documents:
            self._documents[key] = super().get_openapi_schema(
                path_prefix=path_prefix, path_params=path_params
            )
        return self._documents[key]


api = Api(
    title="pwd API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api",
    openapi_url="/schema/",
    docs_url="/docs/",
    docs=Swagger(settings={"tryItOutEnabled": False}),
    docs_decorator=_on_the_loop,
    parser=JsonObjectParser(),
)
api.add_router("", views.router)
api.add_router("", views_session_time.router)
api.add_router("", views_setup.router)
api.add_router("", views_files.router)
api.add_router("", workshops_api.router)
api.add_router("", capacity_api.router)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return exc.response()


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja wraps whatever the parser raises in HttpError(400); ours says more.
    if isinstance(exc.__cause__, ApiError):
        return exc.__cause__.response()
    return error_response(exc.status_code, None, _sentence(exc))


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """A body that does not fit its schema: 400 invalid_request, never ninja's 422."""
    first = exc.errors[0] if exc.errors else {}
    # loc is ("body", <parameter>, <field>...); the field is what a client knows.
    field = ".".join(str(part) for part in first.get("loc", ())[2:])
    text = first.get("msg", "the body does not fit the schema")
    message = f"{field}: {text}." if field else _sentence(f"The body does not fit: {text}")
    return error_response(400, "invalid_request", message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404)


@api.exception_handler(engine.EngineUnavailable)
def _engine_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = error_response(503, "engine_unavailable", _sentence(exc))
    response["Retry-After"] = "5"
    return response


@api.exception_handler(engine.NodeStartError)
def _node_start_failed(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(502, "node_start_failed", _sentence(exc))


@api.exception_handler(engine.EngineError)
def _engine_error(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(502, "engine_error", _sentence(exc))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side.")


def _sentence(exc: Exception | str) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
