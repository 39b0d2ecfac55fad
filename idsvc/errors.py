"""One error root with stable, snake_case codes, and the one table that maps each code to its CLI exit code and its
HTTP status.

Library code raises ``IdsvcError`` and nothing else on purpose; the CLI and the HTTP API each read ``exit_code`` or
``http_status`` from the table below, so the same failure reads the same everywhere and a new code is one new row.
"""

from __future__ import annotations

import errno
from typing import Any, NamedTuple

#: Exit codes of the CLI, documented in the README and ``idsvc --help``.
EXIT_NEGATIVE = 1  # the answer is "no": not the same person, unknown face, problems remain
EXIT_INPUT = 2  # usage or input error: bad option, bad image, unknown identity
EXIT_INTERNAL = 3  # our fault: a bug or an unexpected failure
EXIT_BUSY = 4  # another process holds the write lock, or a request ran out of time
EXIT_STATE = 5  # the home, its database or its configuration is not usable as it stands


class Mapping(NamedTuple):
    exit_code: int
    http_status: int
    meaning: str


#: code -> (exit code, HTTP status, what it means). The only place either number is chosen.
CODES: dict[str, Mapping] = {
    # input: the caller gave us something we cannot use. Over HTTP, 400 says the request does not match its documented
    # schema; 422 says it does, but its content cannot be used (not an image, no face).
    "file_not_found": Mapping(EXIT_INPUT, 400, "a named file or folder does not exist"),
    "file_unreadable": Mapping(EXIT_INPUT, 400, "a named file cannot be read (permissions, name too long, I/O)"),
    "not_an_image": Mapping(EXIT_INPUT, 422, "the bytes are not a decodable image"),
    "truncated_image": Mapping(EXIT_INPUT, 422, "the image file is cut short"),
    "image_too_small": Mapping(EXIT_INPUT, 422, "the image is smaller than the minimum side"),
    "too_large": Mapping(EXIT_INPUT, 413, "the image or request body is over its limit"),
    "no_face": Mapping(EXIT_INPUT, 422, "no face was found"),
    "multiple_faces": Mapping(EXIT_INPUT, 422, "enrollment needs one unambiguous face"),
    "low_quality": Mapping(EXIT_INPUT, 422, "the face fails the enrollment quality gate"),
    "invalid_argument": Mapping(EXIT_INPUT, 400, "an option or field is out of range or malformed"),
    "route_not_found": Mapping(EXIT_INPUT, 404, "no such route (HTTP only)"),
    "method_not_allowed": Mapping(EXIT_INPUT, 405, "the route does not take that method (HTTP only)"),
    "invalid_pairs_file": Mapping(EXIT_INPUT, 400, "a pairs file cannot be parsed"),
    "not_enough_data": Mapping(EXIT_INPUT, 400, "too few photos, pairs or identities for the job"),
    "model_invalid": Mapping(EXIT_INPUT, 400, "a checkpoint file is not a usable idsvc model"),
    "archive_invalid": Mapping(EXIT_INPUT, 400, "an export archive is malformed or fails its checksums"),
    # not found / conflict: the request names stored state that is missing or clashes
    "identity_not_found": Mapping(EXIT_INPUT, 404, "no identity of that name"),
    "template_not_found": Mapping(EXIT_INPUT, 404, "no template with that id"),
    "key_not_found": Mapping(EXIT_INPUT, 404, "no active API key of that name"),
    "identity_exists": Mapping(EXIT_INPUT, 409, "an identity of that name exists"),
    "key_exists": Mapping(EXIT_INPUT, 409, "an API key of that name exists"),
    "already_enrolled": Mapping(EXIT_INPUT, 409, "the same image is enrolled under another identity"),
    "model_mismatch": Mapping(EXIT_INPUT, 409, "templates of another model version cannot be compared"),
    # auth (HTTP only)
    "unauthorized": Mapping(EXIT_INPUT, 401, "missing, unknown or revoked API key"),
    "forbidden": Mapping(EXIT_INPUT, 403, "the key's scope is too narrow"),
    "rate_limited": Mapping(EXIT_INPUT, 429, "too many requests for one key"),
    # busy: try again later
    "busy": Mapping(EXIT_BUSY, 503, "another process holds the write lock"),
    "timeout": Mapping(EXIT_BUSY, 504, "the request took longer than its limit"),
    "overloaded": Mapping(EXIT_BUSY, 503, "the server's queue for this worker is full: try again shortly"),
    # state / configuration: the home needs an operator's hand
    "invalid_config": Mapping(EXIT_STATE, 500, "a setting (flag or IDSVC_* variable) is invalid"),
    "database_unavailable": Mapping(EXIT_STATE, 503, "the registry database cannot be opened or reached"),
    "schema_outdated": Mapping(EXIT_STATE, 503, "the database schema is not at this version's revision"),
    "no_threshold": Mapping(EXIT_STATE, 409, "no match threshold: none calibrated, none in the model card"),
    "index_corrupt": Mapping(EXIT_STATE, 503, "the vector index disagrees with the registry"),
    "not_ready": Mapping(EXIT_STATE, 503, "the server cannot answer yet: model, database or index not usable"),
    "home_unwritable": Mapping(EXIT_STATE, 503, "the home folder (crops, index) cannot be written"),
    "disk_full": Mapping(EXIT_STATE, 507, "no space left where the home or its database writes; nothing half-written"),
    "vectors_invalid": Mapping(EXIT_STATE, 409, "a stored vector has the wrong length, is not finite or not unit "
                               "norm (`idsvc doctor --fix` re-embeds it)"),
    "crop_missing": Mapping(EXIT_STATE, 409, "a template's stored crop and its source photo are both gone"),
    "upgrade_incomplete": Mapping(EXIT_STATE, 409, "a model switch found templates without a new vector"),
    # ours
    "internal": Mapping(EXIT_INTERNAL, 500, "an unexpected failure (a bug)"),
}


#: Failures of the machine, not of the input: a write that meets one stops there, and what it committed before is
#: reported as stored (``enroll``), never as failed.
MACHINE_FAILURES = ("disk_full", "home_unwritable", "database_unavailable")


class IdsvcError(Exception):
    """The single exception type the library raises on purpose.

    ``code`` is stable (part of the CLI's JSON, the API's problem body and the docs); ``message`` is one human line;
    ``details`` carries machine-readable context such as the offending path. An unknown code is a bug in idsvc, so
    it becomes ``internal`` rather than a second kind of exception.
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        if code not in CODES:
            details = {**details, "unknown_code": code}
            code = "internal"
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def exit_code(self) -> int:
        return CODES[self.code].exit_code

    @property
    def http_status(self) -> int:
        return CODES[self.code].http_status

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": _jsonable(self.details)}


#: OS errors that, when they carry a file name, are about a path the caller named (the library converts the ones it
#: expects where it opens the file; this catches the rest before they read as a bug).
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENOTDIR, errno.EISDIR}


def from_os_error(exc: BaseException) -> IdsvcError | None:
    """``file_unreadable`` for an ``OSError`` about a named path; None for anything else (a missing file is checked
    where it is named, so an unexpected ENOENT stays a bug)."""
    if not isinstance(exc, OSError) or exc.errno not in _PATH_ERRNOS or not exc.filename:
        return None
    return IdsvcError("file_unreadable", f"{short_path(exc.filename)}: {exc.strerror}", path=str(exc.filename))


#: OS errors that say the device is out of space (or the process out of its file-size allowance).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: What database drivers say when the disk under the database is full (SQLite; PostgreSQL names the errno).
_FULL_MESSAGES = ("database or disk is full", "no space left on device", "disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full device, or a driver's error whose text says so."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc).lower()
    return any(m in text for m in _FULL_MESSAGES)


def from_write_error(exc: OSError, what: str) -> IdsvcError:
    """``disk_full`` when ``exc`` is the device running out of space, else ``home_unwritable``; ``what`` says what
    could not be written."""
    if is_disk_full(exc):
        return IdsvcError("disk_full", f"{what}: no space left on the device", errno=exc.errno)
    return IdsvcError("home_unwritable", f"{what}: {exc.strerror or exc}", errno=exc.errno)


def short_path(p: object, limit: int = 120) -> str:
    """A path for a one-line message: long names are elided in the middle."""
    text = str(p)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-limit // 2:]}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
