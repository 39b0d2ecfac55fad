"""The gallery as it is stored: identities, their templates, the stored thresholds and the API keys — each read from
the registry straight into these shapes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from idsvc.results.base import Result


class Identity(Result):
    id: int
    name: str
    metadata: dict[str, Any]
    templates: int
    created_at: str | None


class IdentityList(Result):
    identities: list[Identity]


class Template(Result):
    id: int
    model_version: str
    image_sha256: str
    source_path: str | None = Field(description="the photo's path (admin keys), its file name (other keys), or "
                                    "`upload:NAME` for an uploaded photo")
    box: list[float] | None
    det_prob: float | None
    quality: float | None
    quality_details: dict[str, Any] | None
    crop_path: str | None = Field(description="the stored crop on the server; admin keys only")
    created_at: str | None


class IdentityDetail(Identity):
    template_list: list[Template]


class TemplateList(Result):
    templates: list[Template]


class DeletedIdentity(Result):
    identity: str
    deleted_templates: int


class DeletedTemplate(Result):
    deleted_template: int


class StoredThreshold(Result):
    """A threshold measured by ``calibrate --save`` for one model version (the newest of a version is used)."""

    model_version: str
    value: float
    mode: str
    target_far: float | None
    data_sha256: str
    genuine_pairs: int
    impostor_pairs: int
    details: dict[str, Any]
    created_at: str | None


class ThresholdList(Result):
    thresholds: list[StoredThreshold]


class ApiKey(Result):
    name: str
    scope: str
    prefix: str
    created_at: str | None
    revoked_at: str | None


class NewKey(ApiKey):
    key: str = Field(description="the secret: shown this once, stored only as its sha256")


class KeyList(Result):
    keys: list[ApiKey]


class RevokedKey(Result):
    revoked: str


class Caller(Result):
    """The key a request was made with, once checked: its name and scope."""

    name: str
    scope: str
