"""The API's documented shapes: what each route takes and returns, field for field the CLI's ``--json``, and the one
problem document every error uses. FastAPI validates responses against these, so the OpenAPI file cannot drift from
what the server sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from idsvc.jobs.identities import NAME_PATTERN

#: The identity name rule of ``idsvc.jobs.enroll.check_name``, as a schema.
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


class ItemError(BaseModel):
    """Why one photo of a batch failed; the rest of the batch goes on."""

    code: str
    message: str


class Quality(BaseModel):
    face_px: float
    det_prob: float
    sharpness: float
    yaw: float
    score: float
    outside: float
    preparation: str


class Candidate(BaseModel):
    name: str
    score: float
    template_id: int
    match: bool


class SearchFace(BaseModel):
    box: list[float]
    det_prob: float
    quality: Quality
    identity: str | None = Field(description="the best candidate at or above the threshold, else null")
    score: float | None
    candidates: list[Candidate]


class SearchResult(BaseModel):
    image: str
    model_version: str
    threshold: float
    threshold_source: str
    identity: str | None
    score: float | None
    faces_detected: int
    faces: list[SearchFace]


class BatchSummary(BaseModel):
    items: int
    positive: int
    negative: int
    errors: int
    exit_code: int = Field(description="what the CLI would exit with: 0 all matched, 1 some unknown, 2 some failed")


class BatchSearchItem(BaseModel):
    """One photo's search result, or its error."""

    path: str
    error: ItemError | None = None
    image: str | None = None
    model_version: str | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    identity: str | None = None
    score: float | None = None
    faces_detected: int | None = None
    faces: list[SearchFace] | None = None


class BatchSearchResult(BaseModel):
    results: list[BatchSearchItem]
    summary: BatchSummary


class VerifyResult(BaseModel):
    score: float
    threshold: float
    threshold_source: str
    same: bool
    model_version: str


class VerifyIdentityResult(VerifyResult):
    identity: str


class Accepted(BaseModel):
    path: str
    template_id: int
    quality: Quality


class Rejected(BaseModel):
    path: str
    code: str
    reason: str


class Skipped(BaseModel):
    path: str
    reason: str


class EnrollResult(BaseModel):
    identity: str
    created: bool
    model_version: str
    accepted: list[Accepted]
    rejected: list[Rejected]
    skipped: list[Skipped]


class BulkEnrollResult(BaseModel):
    identities: list[EnrollResult]
    unnamed: list[Rejected] = Field(description="files whose name has no valid PERSON/ folder")
    accepted: int
    rejected: int
    skipped: int


class Identity(BaseModel):
    id: int
    name: str
    metadata: dict[str, Any]
    templates: int
    created_at: str


class IdentityList(BaseModel):
    identities: list[Identity]


class Template(BaseModel):
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
    created_at: str


class IdentityDetail(Identity):
    template_list: list[Template]


class TemplateList(BaseModel):
    templates: list[Template]


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Name


class DeletedIdentity(BaseModel):
    identity: str
    deleted_templates: int


class DeletedTemplate(BaseModel):
    deleted_template: int


class DetectedFace(BaseModel):
    box: list[float]
    det_prob: float
    landmarks: list[list[float]] = Field(description="five (x, y) points: eyes, nose, mouth corners")
    quality: Quality
    quality_problems: list[str] = Field(description="why enrollment's quality gate would refuse it; empty if none")


class DetectedPhoto(BaseModel):
    path: str
    faces: list[DetectedFace] | None = None
    error: ItemError | None = None


class DetectResult(BaseModel):
    photos: list[DetectedPhoto]
    faces: int
    errors: int


class Embedding(BaseModel):
    path: str
    model_version: str
    embedding: list[float] | None = Field(None, description="L2-normalised; compare only within one model_version")
    error: ItemError | None = None


class EmbedResult(BaseModel):
    embeddings: list[Embedding]


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Ready(BaseModel):
    ready: bool
    checks: dict[str, str] = Field(description="each check and its verdict: ok, or why not")


class StatusModel(BaseModel):
    path: str
    name: str
    version: str
    embedding_size: int
    device: str
    numerics: str | None = Field(None, description="float32, or int8 where the CPU runs the quantized network; "
                                                    "null until the model is loaded")


class StatusIndex(BaseModel):
    kind: str | None
    vectors: int
    in_agreement: bool
    problems: list[str]
    path: str | None = Field(description="where the vectors live; admin keys only")


class Status(BaseModel):
    home: str | None = Field(description="the server's home folder; admin keys only")
    db: str | None = Field(description="the registry's database URL, password redacted; admin keys only")
    schema_: str | None = Field(alias="schema")
    model: StatusModel
    identities: int
    templates: int
    templates_other_models: dict[str, int]
    index: StatusIndex
    threshold: float | None
    threshold_source: str | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Reindexed(BaseModel):
    model_version: str
    kind: str
    vectors: int
    seconds: float
