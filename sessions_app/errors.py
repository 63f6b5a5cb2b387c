"""API errors: every one is JSON ``{"error": {"code", "message"}}`` with its status."""

from http import HTTPStatus

from django.http import JsonResponse

# The code for a status when nothing more specific was said (Django's own 404/500...).
DEFAULT_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    502: "engine_error",
    503: "engine_unavailable",
}


def error_response(
    status: int, code: str | None = None, message: str | None = None
) -> JsonResponse:
    """The JSON error body with ``status``; code and message default from the status."""
    code = code or DEFAULT_CODES.get(status, "error")
    if message is None:
        try:
            message = HTTPStatus(status).phrase + "."
        except ValueError:
            message = "The request failed."
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


class ApiError(Exception):
    """Raised by services and views; the API turns it into an error response."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        code: str | None = None,
        status: int | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.retry_after = retry_after

    def response(self) -> JsonResponse:
        response = error_response(self.status, self.code, self.message)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


class BadRequest(ApiError):
    status = 400
    code = "invalid_request"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class NodeGone(ApiError):
    """The node's container went away (removed from outside, or lost with its host)."""

    status = 410
    code = "node_gone"


class PayloadTooLarge(ApiError):
    status = 413
    code = "body_too_large"


class TooManyRequests(ApiError):
    """A rate limit or a capacity cap; ``retry_after`` seconds go in Retry-After."""

    status = 429
    code = "too_many_requests"
