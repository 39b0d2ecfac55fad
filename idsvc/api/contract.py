"""The OpenAPI document, made to say what the server does. FastAPI's own document gets four things wrong for idsvc,
and ``openapi`` mends each after generation:

- error responses are documented as ``application/json``; the server sends ``application/problem+json``;
- FastAPI adds a 422 ``HTTPValidationError`` to routes with parameters; the server answers a malformed request with
  a 400 problem, and 422 only where content cannot be used (not an image, no face), documented per route;
- OpenAPI 3.1 file fields come out as ``contentMediaType`` strings, which generators (openapi-python-client among
  them) type as text and send as text; ``format: binary`` is what they understand as an upload;
- an optional parameter is typed ``X | null``, but neither a query string nor a multipart body has a null: a
  parameter is sent or left out.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from idsvc.api.problems import PROBLEM_JSON

_VALIDATION = "#/components/schemas/HTTPValidationError"


def openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, generated once and mended as described above."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=app.openapi_tags)
    for path in doc.get("paths", {}).values():
        for op in path.values():
            _mend_responses(op.get("responses", {}))
            for param in op.get("parameters", []):
                _mend_field(param.get("schema", {}))
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for name, schema in schemas.items():
        if name.startswith("Body_"):  # FastAPI's name for a multipart (or form) body
            for prop in schema.get("properties", {}).values():
                _mend_field(prop)
    app.openapi_schema = doc
    return doc


def _mend_responses(responses: dict[str, Any]) -> None:
    for status, resp in list(responses.items()):
        content = resp.get("content", {})
        if content.get("application/json", {}).get("schema", {}).get("$ref") == _VALIDATION:
            del responses[status]
        elif status.isdigit() and int(status) >= 400 and "application/json" in content:
            content[PROBLEM_JSON] = content.pop("application/json")


def _mend_field(prop: dict[str, Any]) -> None:
    variants = prop.get("anyOf")
    if variants and any(v.get("type") == "null" for v in variants):
        kept = [v for v in variants if v.get("type") != "null"]
        del prop["anyOf"]
        prop.update(kept[0] if len(kept) == 1 else {"anyOf": kept})
        if prop.get("default", 0) is None:
            del prop["default"]
    for schema in (prop, prop.get("items", {})):
        if schema.pop("contentMediaType", None) is not None:
            schema["format"] = "binary"
