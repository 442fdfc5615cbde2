"""One JSON error envelope for the API, friendly HTML error pages elsewhere; never a traceback.

Every error under /api/ (and /healthz) is ``{"error": {"status": 400, "code": "bad_request", "message": "..."}}``
with a message a person can act on. Unexpected exceptions are logged with their traceback and answered
with a 500 envelope that says nothing about the internals.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

_MESSAGES = {
    400: "the request is malformed",
    404: "nothing here: check the URL",
    405: "this method is not allowed here",
    413: "the request body is too large",
    415: "unsupported content type",
    500: "something went wrong on our side; the error was logged",
    503: "the search index is not available yet",
}


class ApiError(Exception):
    """An error to answer with the envelope: status code, machine-readable code and a human message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _code_for(status)


def _code_for(status: int) -> str:
    return {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
            415: "unsupported_media_type", 500: "internal_error", 503: "unavailable"}.get(status, "error")


def error_envelope(status: int, message: str, code: str | None = None) -> Response:
    """The API's error response."""
    resp = jsonify({"error": {"status": status, "code": code or _code_for(status), "message": message}})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api" or request.path == "/healthz"


def register_error_handlers(app: Flask, max_upload_mb: int) -> None:
    """Route every error through the envelope (API) or the error page (HTML)."""

    def respond(status: int, message: str, code: str | None = None, headers: dict | None = None):
        if _wants_json():
            resp = error_envelope(status, message, code)
        else:
            resp = app.response_class(render_template("error.html", status=status, message=message),
                                      status=status, mimetype="text/html")
        for key, value in (headers or {}).items():
            resp.headers[key] = value
        return resp

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return respond(exc.status, exc.message, exc.code)

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        status = exc.code or 500
        if status == 413:
            message = f"the upload is too large: the limit is {max_upload_mb} MB"
        elif status == 405:
            allowed = ", ".join(sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS")))
            message = f"{request.method} is not allowed here" + (f"; use {allowed}" if allowed else "")
        elif status == 400 and exc.description and "browser (or proxy)" not in exc.description:
            message = exc.description
        else:
            message = _MESSAGES.get(status, exc.name.lower())
        headers = {"Allow": ", ".join(exc.valid_methods)} if status == 405 and exc.valid_methods else None
        return respond(status, message, headers=headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - handled above
            return handle_http(exc)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return respond(500, _MESSAGES[500])

    app.register_error_handler(InternalServerError, lambda exc: respond(500, _MESSAGES[500]))
