"""One error root with stable, snake_case codes.

Library code raises these and nothing else on purpose; each skin (CLI, HTTP) maps ``code`` to an exit code or an HTTP
status in exactly one place, so the same failure reads the same everywhere.
"""

from __future__ import annotations

from typing import Any

#: code -> kind. "input": the caller gave us something we cannot use (exit 2, HTTP 4xx); "not_found": a named thing
#: does not exist (exit 2, HTTP 404); "conflict": the request clashes with stored state (exit 2, HTTP 409);
#: "busy": another process holds the lock (its own exit code, HTTP 503); "internal": our fault (exit 3, HTTP 500).
CODES: dict[str, str] = {
    "file_not_found": "input",
    "not_an_image": "input",
    "truncated_image": "input",
    "image_too_small": "input",
    "too_large": "input",
    "no_face": "input",
    "multiple_faces": "input",
    "low_quality": "input",
    "invalid_argument": "input",
    "invalid_pairs_file": "input",
    "not_enough_data": "input",
    "model_invalid": "input",
    "identity_not_found": "not_found",
    "template_not_found": "not_found",
    "key_not_found": "not_found",
    "identity_exists": "conflict",
    "model_mismatch": "conflict",
    "busy": "busy",
    "unauthorized": "auth",
    "forbidden": "auth",
    "rate_limited": "auth",
    "timeout": "busy",
    "index_corrupt": "internal",
    "internal": "internal",
}


class IdsvcError(Exception):
    """The single exception type the library raises on purpose.

    ``code`` is stable (part of the CLI's JSON, the API's problem body and the docs); ``message`` is one human line;
    ``details`` carries machine-readable context such as the offending path.
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def kind(self) -> str:
        return CODES[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": _jsonable(self.details)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
