"""The answers about faces: enroll, search, verify, detect and embed — what ``Service`` returns, the CLI writes with
``--json`` / ``--jsonl`` and the API sends, field for field."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field

from idsvc.results.base import BatchSummary, Item, ItemError, Result, item_of


class Quality(Result):
    """Measured quality of one face (the enrollment gate compares these with the ``quality_*`` settings)."""

    face_px: float
    det_prob: float
    sharpness: float
    yaw: float
    score: float
    outside: float
    preparation: str
    format: str | None = Field(default=None, description="the photo's file format as decoded: JPEG, PNG, HEIF, AVIF, "
                               "…; null for templates stored before it was recorded")


# -- enroll ------------------------------------------------------------------------------------------------------------
class Accepted(Result):
    path: str
    template_id: int
    quality: Quality


class Rejected(Result):
    path: str
    code: str
    reason: str


class Skipped(Result):
    path: str
    reason: str


class EnrollResult(Result):
    identity: str
    created: bool
    model_version: str
    accepted: list[Accepted] = Field(description="photos stored now, each with its template id")
    rejected: list[Rejected]
    skipped: list[Skipped]
    index_behind: bool = Field(default=False, description="the accepted templates are stored, but the vector index "
                               "could not be saved (a full disk): the next search catches it up from the registry")


class BulkEnrollResult(Result):
    """``enroll --each``: one identity per person folder (a folder of people folders, or uploads named
    PERSON/PHOTO)."""

    folder: str | None = Field(default=None, description="the folder of people folders, when one was given (the CLI)")
    identities: list[EnrollResult]
    unnamed: list[Rejected] = Field(description="files whose name has no valid PERSON/ folder")
    accepted: int
    rejected: int
    skipped: int


# -- search ------------------------------------------------------------------------------------------------------------
class Candidate(Result):
    name: str
    score: float
    template_id: int
    match: bool


class SearchFace(Result):
    box: list[float]
    det_prob: float
    quality: Quality
    identity: str | None = Field(description="the best candidate at or above the threshold, else null")
    score: float | None
    candidates: list[Candidate]


class SearchGallery(Result):
    """The gallery a search's threshold was chosen for."""
    identities: int
    templates: int


class SearchResult(Result):
    image: str
    model_version: str
    threshold: float
    threshold_source: str = Field(description="argument, settings, calibrated_fpir or model_card_fpir (from the "
                                  "impostor tail at target_fpir for this gallery), or calibrated / model_card (the "
                                  "1:1 threshold, where it is the higher or no impostor tail is known)")
    target_fpir: float | None = Field(description="the share of searches by people not enrolled allowed to name "
                                      "anyone; None for a fixed threshold")
    gallery: SearchGallery = Field(description="the gallery size the threshold assumed")
    identity: str | None
    score: float | None
    faces_detected: int
    faces: list[SearchFace]


class SearchAnswer(Item):
    """What a search item does; its fields are ``SearchResult``'s (``SearchItem``)."""

    @classmethod
    def of(cls, path: str, result: SearchResult) -> Self:
        return cls.model_validate({"path": path, **{k: getattr(result, k) for k in result.model_fields_set}})

    @classmethod
    def failure(cls, path: str, error: ItemError) -> Self:
        return cls.model_validate({"path": path, "error": error})

    @property
    def positive(self) -> bool:
        """Identified: any of the photo's faces is a known identity."""
        return self.failed is None and any(f.identity for f in self.result().faces)

    def result(self) -> SearchResult:
        """The answer without the item's name (what a one-photo search returns); its error raised if it has one."""
        self.raise_error()
        return SearchResult.model_validate({k: getattr(self, k) for k in SearchResult.model_fields})


SearchItem = item_of("BatchSearchItem", SearchResult, "One photo's search result, or its error.", SearchAnswer,
                     path=str)


class BatchSearchResult(Result):
    results: list[SearchItem]  # type: ignore[valid-type]
    summary: BatchSummary


# -- verify ------------------------------------------------------------------------------------------------------------
class VerifyResult(Result):
    score: float
    threshold: float
    threshold_source: str
    same: bool
    model_version: str


class VerifyIdentityResult(VerifyResult):
    identity: str


class VerifyAnswer(Item):
    """What a verify item does; its fields are ``VerifyResult``'s (``VerifyItem``)."""

    @classmethod
    def of(cls, a: str, b: str, result: VerifyResult) -> Self:
        return cls.model_validate({"a": a, "b": b, **{k: getattr(result, k) for k in result.model_fields_set}})

    @classmethod
    def failure(cls, a: str, b: str, error: ItemError) -> Self:
        return cls.model_validate({"a": a, "b": b, "error": error})

    @property
    def positive(self) -> bool:
        return self.failed is None and self.result().same

    @property
    def label(self) -> str:
        return f"{getattr(self, 'a', '')}  {getattr(self, 'b', '')}"

    def result(self) -> VerifyResult:
        """The answer without the pair's names; its error raised if it has one."""
        self.raise_error()
        return VerifyResult.model_validate({k: getattr(self, k) for k in VerifyResult.model_fields})


VerifyItem = item_of("VerifyItem", VerifyResult, "One pair's verification, or its error.", VerifyAnswer,
                     a=str, b=str)


# -- detect ------------------------------------------------------------------------------------------------------------
class DetectedFace(Result):
    box: list[float]
    det_prob: float
    landmarks: list[list[float]] = Field(description="five (x, y) points: eyes, nose, mouth corners")
    quality: Quality
    quality_problems: list[str] = Field(description="why enrollment's quality gate would refuse it; empty if none")
    crop: str | None = Field(default=None,
                             description="where the aligned crop was written (`detect --crops`); null over HTTP")


class DetectedPhoto(Item):
    path: str
    faces: list[DetectedFace] | None = None
    error: ItemError | None = None


class DetectResult(Result):
    photos: list[DetectedPhoto]
    faces: int
    errors: int


# -- embed -------------------------------------------------------------------------------------------------------------
class Embedding(Item):
    path: str
    model_version: str
    embedding: list[float] | None = Field(default=None,
                                          description="L2-normalised; compare only within one model_version")
    error: ItemError | None = None

    @property
    def positive(self) -> bool:
        return self.embedding is not None


class EmbedResult(Result):
    embeddings: list[Embedding]


class EmbeddingRow(Result):
    """Where a photo's vector is in the ``.npy`` file (``row``), or why it has none."""

    path: str
    row: int | None
    error: dict[str, Any] | None = None


class EmbeddingsFile(Result):
    """``embed -o FILE.npy``: (rows, dim) float32 in ``path``, photo → row and the model version in ``sidecar``."""

    path: str
    sidecar: str
    model_version: str
    dim: int
    rows: int
    errors: list[EmbeddingRow]
