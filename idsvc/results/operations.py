"""The answers about running a home: status and readiness, reindex and model upgrades, doctor, archives, copies to
other backends, schema migrations, models, calibration, evaluation and training."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from idsvc.results.base import Result
from idsvc.results.gallery import StoredThreshold


# -- status ------------------------------------------------------------------------------------------------------------
class StatusModel(Result):
    path: str
    name: str
    version: str
    embedding_size: int
    device: str
    numerics: str | None = Field(default=None, description="float32, or int8 where the CPU runs the quantized network; "
                                                    "null until the model is loaded")


class StatusIndex(Result):
    kind: str | None
    vectors: int
    in_agreement: bool
    problems: list[str]
    path: str | None = Field(description="where the vectors live; admin keys only")


class Status(Result):
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


class Ready(Result):
    ready: bool
    checks: dict[str, str] = Field(description="each check and its verdict: ok, or why not")


# -- reindex, doctor ---------------------------------------------------------------------------------------------------
class Upgrade(Result):
    """``reindex --model``: every template re-embedded with the new checkpoint, then the home switched to it."""

    from_: list[str] = Field(alias="from")
    to: str
    templates: int
    re_embedded: int
    resumed_from: int
    already_on_new_version: int
    model_path: str


class Reindexed(Result):
    upgrade: Upgrade | None = Field(default=None,
                                    description="present when a model switch was made (`reindex --model`)")
    model_version: str
    kind: str
    vectors: int
    seconds: float


class Finding(Result):
    """Something a check found: its name, one line, and up to 20 template ids."""

    check: str
    problem: str
    ids: list[int] | None = None


class Leftover(Result):
    kind: str
    path: str
    bytes: int


class DoctorReport(Result):
    problems: list[Finding]
    notes: list[Finding]
    leftovers: list[Leftover]
    fixed: list[str]
    remaining: list[Finding]
    ok: bool


# -- archives, copies, schema ------------------------------------------------------------------------------------------
class Exported(Result):
    path: str
    format: str
    created_at: str
    identities: int
    templates: int
    thresholds: int
    crops: int
    model_versions: list[str]


class Imported(Result):
    path: str
    identities: int
    templates: int
    thresholds: int
    re_embedded: int
    model_version: str
    archive_model_versions: list[str]


class HomeCopied(Result):
    """``idsvc migrate``: the home copied to other backends."""

    to_db: str
    to_vectors: str
    identities: int
    templates: int
    copied_now: int
    copied_rows: dict[str, int]
    vectors: int
    crops: str
    seconds: float


class SchemaRevision(Result):
    db: str
    revision: str


# -- models, calibration, evaluation, training -------------------------------------------------------------------------
class ModelInfo(Result):
    path: str
    active: bool
    card: dict[str, Any]


class ModelWritten(Result):
    """A checkpoint written (imported, fused or trained) and its card."""

    path: str
    card: dict[str, Any]


class _Measured(Result):
    """What ``eval`` and ``calibrate`` both report of a set of labelled pairs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True,
                              protected_namespaces=())

    model_version: str
    model_path: str
    pairs: int
    genuine: int
    impostor: int
    images: int
    no_face: int
    auc: float
    eer: float
    eer_threshold: float
    accuracy: float
    accuracy_std: float
    tar_at_far_1e_3: float = Field(alias="tar_at_far_1e-3")


class Evaluation(_Measured):
    """``idsvc eval``: the LFW protocol on a pairs file."""

    fold_accuracy: list[float]
    fold_thresholds: list[float]
    threshold: float = Field(description="the best-accuracy threshold, mean of the folds'")
    plot: str | None = None
    card_threshold: float | None = None


class Calibration(_Measured):
    """``idsvc calibrate``: thresholds measured for the active model, the chosen one, and open-set rates for a
    folder."""

    data: str
    source: str
    data_sha256: str
    accuracy_threshold: float
    accuracy_fold_thresholds: list[float]
    far_thresholds: list[dict[str, Any]]
    threshold: float
    operating_point: dict[str, Any]
    open_set: dict[str, Any] | None = None
    impostor_tail: dict[str, Any] | None = Field(None, description="the impostor-score tail of every pair of "
                                                 "different people in the data (saved with the threshold: searches "
                                                 "size their threshold by it); None with the reason in "
                                                 "impostor_tail_note where too few")
    impostor_tail_note: str | None = None
    saved: StoredThreshold | None = None
    report: dict[str, str] | None = None
