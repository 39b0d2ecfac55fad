"""The parameters the routes share, each with the rule the server enforces, so that the OpenAPI file states it and a
request inside it is never refused as malformed. Photos travel in the multipart body; options (``top_k``,
``threshold``, ``aligned``, ``all_faces``) in the query string, as CompreFace does: a multipart text field cannot
tell an empty list from an absent field or a number from a string, a query parameter's type is unambiguous."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, File, Path, Query, UploadFile
from pydantic import BeforeValidator

from idsvc.api.deps import scope
from idsvc.jobs.identities import NAME_PATTERN
from idsvc.results import Caller

#: Photos per request on the batch routes (the body limit, ``IDSVC_API_MAX_BODY_BYTES``, also applies).
MAX_FILES = 100

Photo = Annotated[UploadFile, File(description="a photo (JPEG, PNG, WebP, ...)")]
Photos = Annotated[list[UploadFile], File(min_length=1, max_length=MAX_FILES,
                                          description=f"1 to {MAX_FILES} photos")]
TopK = Annotated[int, Query(ge=1, le=100, description="identities to return per face")]
Threshold = Annotated[float | None, Query(ge=-1.0, le=1.0, description="cosine threshold; default: the calibrated "
                                        "one for the active model, else the model card's")]


def _true_or_false(value: object) -> object:
    """A flag is ``true`` or ``false``, as its schema says (not 0, 1, yes, on: pydantic's lax reading would
    take a value the contract calls invalid)."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


Flag = BeforeValidator(_true_or_false)
AllFaces = Annotated[bool, Flag, Query(description="search every face in the photo, not only the main one")]
Aligned = Annotated[bool, Flag, Query(description="the photos are already aligned face crops (no detection)")]

IdentityName = Annotated[str, Path(pattern=NAME_PATTERN, min_length=1, max_length=255, examples=["Colin Powell"],
                                   description="1-255 characters; no slash, backslash or control character; no "
                                   "whitespace at either end")]
TemplateId = Annotated[int, Path(ge=1, le=2**63 - 1)]

#: The caller's key, by the scope a route needs.
Reader = Annotated[Caller, Depends(scope("read"))]
Writer = Annotated[Caller, Depends(scope("write"))]
Admin = Annotated[Caller, Depends(scope("admin"))]
