"""Validate real responses against the served OpenAPI document (JSON Schema 2020-12, as OpenAPI 3.1 uses)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema the document declares for (path template, method, status); fails if undeclared."""
    op = doc["paths"][path][method.lower()]
    declared = op["responses"]
    assert str(status) in declared, f"{method} {path} answered {status}, which the OpenAPI document does not declare"
    return declared[str(status)]["content"]["application/json"]["schema"]


def validate(doc: dict[str, Any], schema: dict[str, Any], body: Any) -> None:
    """Raise jsonschema.ValidationError if body does not match schema ($refs resolve inside doc)."""
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"], **schema}
    Draft202012Validator(wrapper).validate(body)


def assert_matches(doc: dict[str, Any], path: str, method: str, response) -> Any:  # noqa: ANN001 - test response
    """Check a Flask test response (or (status, json) pair) against the document; return its JSON."""
    status, body = (response.status_code, response.get_json()) if hasattr(response, "status_code") else response
    assert body is not None, f"{method} {path} -> {status}: not JSON"
    validate(doc, response_schema(doc, path, method, status), body)
    return body


def assert_error(doc: dict[str, Any], response, status: int) -> str:  # noqa: ANN001
    """The response is the Error envelope with this status; returns its message."""
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    body = response.get_json()
    validate(doc, {"$ref": "#/components/schemas/Error"}, body)
    assert body["error"]["status"] == status
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return body["error"]["message"]
