"""One error hierarchy for everything a client can get wrong, each mapped to its HTTP status.

Handlers raise these; the app turns them into a JSON body `{"error": {"code", "message", "field"}}`.
Anything else that escapes is a server bug and is reported without internals."""

from __future__ import annotations

from typing import Any, Protocol


class HeaderLookup(Protocol):
    """Request headers, case-insensitive (werkzeug Headers, or a dict in tests)."""

    def get(self, key: str, /) -> str | None: ...


class ServingError(Exception):
    """A request the server refuses; `field` names the part of the request at fault, if any."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class BadRequest(ServingError):
    """The body cannot be read at all: not JSON, wrong envelope, wrong structure."""

    status = 400
    code = "bad_request"


class Unauthorized(ServingError):
    status = 401
    code = "unauthorized"


class Forbidden(ServingError):
    status = 403
    code = "forbidden"


class NotFound(ServingError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ServingError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ServingError):
    """Body bytes or row count over the configured limits."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported_media_type"


class SchemaViolation(ServingError):
    """Well-formed input that does not match the model signature (columns, types, missing values, shape)."""

    status = 422
    code = "schema_violation"


class NotReady(ServingError):
    status = 503
    code = "not_ready"
