"""The API's own shapes: the problem document every error uses, the health answer and the rename request. Every
other response is a result the library returns (``idsvc.results``), declared as the route's response model, so the
OpenAPI document cannot drift from what the server sends or from the CLI's ``--json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from idsvc.jobs.identities import NAME_PATTERN

#: The identity name rule of ``idsvc.jobs.identities.check_name``, as a schema.
Name = Field(pattern=NAME_PATTERN, min_length=1, max_length=255, examples=["Colin Powell"])


class Problem(BaseModel):
    """RFC 9457 problem details, with idsvc's stable ``code`` and the request's id (also in ``X-Request-ID``)."""

    type: str = Field(examples=["https://idsvc.dev/errors/no_face"])
    title: str
    status: int = Field(ge=400, le=599)
    code: str = Field(description="stable, snake_case; the table is in idsvc/errors.py", examples=["no_face"])
    detail: str = Field(description="one human line")
    details: dict[str, Any] = Field(default_factory=dict, description="machine-readable context")
    request_id: str


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name
