"""API errors as exceptions: each carries the HTTP status, the error code and message."""

from __future__ import annotations

from typing import Any, Optional


class TrainyardError(Exception):
    """An error answer of the API (`{"success": false, "error": {"code", "message"}}`)."""

    def __init__(self, status: int, code: str, message: str, body: Optional[dict[str, Any]] = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}


class InvalidRequest(TrainyardError):
    """400, 413, 415 or 422: the request is wrong; `message` lists every problem."""


class Unauthorized(TrainyardError):
    """401: no token, or not one the node knows."""


class Forbidden(TrainyardError):
    """403: the token's role is below the route's (or a foreign Origin)."""


class NotFound(TrainyardError):
    """404: unknown model type, task, data set or schedule; `task_expired` for an expired one."""


class Conflict(TrainyardError):
    """409: e.g. cancelling an ended task, or a schedule name already taken."""


class RateLimited(TrainyardError):
    """429: too many requests, or the queue is full; wait `retry_after` seconds."""

    def __init__(self, status: int, code: str, message: str, body=None, retry_after: Optional[float] = None):
        super().__init__(status, code, message, body)
        self.retry_after = retry_after


class Unavailable(TrainyardError):
    """503: the store is unreachable or the node is stopping."""


class WaitTimeout(TrainyardError):
    """504 from a synchronous training, or `Task.wait` past its timeout; `task_id` says which."""

    def __init__(self, status: int, code: str, message: str, body=None, task_id: Optional[str] = None):
        super().__init__(status, code, message, body)
        self.task_id = task_id


class TaskFailed(TrainyardError):
    """`Task.wait` on a task that ended FAILURE or REVOKED; `state` and `error` say how."""

    def __init__(self, task_id: str, state: str, error: Optional[dict[str, Any]]):
        code = (error or {}).get("code", state.lower())
        message = (error or {}).get("message", f"task {task_id} ended {state}")
        super().__init__(200, code, message, error)
        self.task_id = task_id
        self.state = state
        self.error = error


_BY_STATUS = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
    504: WaitTimeout,
}


def from_response(status: int, body: Any, retry_after: Optional[str]) -> TrainyardError:
    """The exception for an error answer."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        error = {}
    code = str(error.get("code", "http_error"))
    message = str(error.get("message", body if isinstance(body, str) else f"HTTP {status}"))
    kind = _BY_STATUS.get(status, TrainyardError)
    if kind is RateLimited:
        seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
        return RateLimited(status, code, message, body, retry_after=seconds)
    if kind is WaitTimeout:
        return WaitTimeout(status, code, message, body, task_id=error.get("task_id"))
    return kind(status, code, message, body)
