"""The one configuration object: CLI flags > ``IDSVC_*`` environment > defaults.

Built once at start-up by a skin (CLI, server, test) and passed down; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from idsvc.errors import IdsvcError

#: The repository root (the package lives in ``<root>/idsvc``); shipped models and samples live under ``<root>/data``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def packaged(package: str, in_checkout: str) -> Path:
    """A folder that ships inside the installed package (the wheel maps ``migrations/`` to ``idsvc.migrations`` and
    ``data/models/`` to ``idsvc.models``), found with ``importlib.resources``; when idsvc runs from a checkout that
    was never installed, the folder's place in the repository."""
    from importlib.resources import files

    try:
        return Path(str(files(package)))
    except ModuleNotFoundError:
        return PROJECT_ROOT / in_checkout


DEFAULT_MODEL = packaged("idsvc.models", "data/models") / "idsvc-default.pt"
#: The evaluation and training data of a development checkout (never part of the package).
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

IndexKind = Literal["flat", "ivf-flat", "ivf-pq", "hnsw"]


#: ``IDSVC_VECTORS``: "faiss", "milvus:///path/file.db" or "http(s)://host:port" (also ``migrate --to-vectors``).
VECTORS_PATTERN = r"^(faiss|milvus://.+|https?://.+)$"


class Settings(BaseSettings):
    """Every tunable of idsvc. Detection thresholds are ``det_*``/``quality_*``; the match threshold is
    ``threshold``."""

    model_config = SettingsConfigDict(env_prefix="IDSVC_", frozen=True, extra="forbid")

    home: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("idsvc")))
    db: str | None = None  # any SQLAlchemy URL; default sqlite:///<home>/idsvc.db
    model: Path = DEFAULT_MODEL
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(32, ge=1, le=1024)

    # Match threshold override (cosine score); None = calibrated value in the registry, else the model card's.
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    # Search (1:N) decides "unknown" at this FPIR — the share of searches by people not enrolled that may name anyone —
    # for the gallery searched: its threshold comes from the model's impostor-score tail and rises with the number
    # of templates (idsvc.measurement.impostor_tail). 1%: the operating point NIST's FRTE 1:N states FNIR at for
    # identification; with the shipped model and 10,000 templates it already costs 15% of enrolled people missed on
    # LFW, and 0.1% would cost 36% (docs/accuracy.md).
    search_fpir: float = Field(0.01, gt=0.0, lt=1.0)

    # Image intake.
    max_image_pixels: int = Field(40_000_000, ge=1)  # larger images are refused (decompression bombs, 50 MP uploads)
    min_image_side: int = Field(32, ge=1)
    detect_max_side: int = Field(1280, ge=160)  # images are downscaled to this for detection, boxes mapped back

    # Faces that fill the frame (tight crops): when more than ``tight_crop_outside`` of the aligned crop would lie
    # outside the photo, the crop is prepared by ``tight_crop_mode``: ``auto`` — the photo itself where it frames the
    # face at the template's scale, else a black margin, as each encoder's own pipeline gives it — or always a black
    # margin, always the photo, or the margin filled from the face's border (see ``FaceReader.prepare``).
    tight_crop_outside: float = Field(0.10, ge=0.0, le=1.0)
    tight_crop_mode: Literal["auto", "black", "whole", "replicate", "reflect"] = "auto"

    # Detection (MTCNN) and the quality gate.
    det_min_face_size: int = Field(20, ge=8)
    det_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    quality_min_face_px: int = Field(40, ge=1)
    quality_min_det_prob: float = Field(0.90, ge=0.0, le=1.0)
    quality_min_sharpness: float = Field(10.0, ge=0.0)  # variance of the Laplacian of the aligned grey crop
    quality_max_yaw: float = Field(0.75, ge=0.0)  # |nose offset from the eye midline| / eye distance

    # Vector store: "faiss" (embedded, files in the home), "milvus:///path/file.db" (Milvus Lite, embedded) or
    # "http://host:19530" (a Milvus server or cluster).
    vectors: str = Field("faiss", pattern=VECTORS_PATTERN)

    # Vector index (FAISS).
    index_kind: IndexKind = "flat"
    index_nlist: int = Field(0, ge=0)  # 0 = about 4*sqrt(N)
    index_nprobe: int = Field(0, ge=0)  # 0 = nlist/16, at least 16
    index_pq_m: int = Field(16, ge=1)
    index_hnsw_m: int = Field(32, ge=2)
    index_ef_search: int = Field(128, ge=1)
    index_gpu: bool = True  # use a GPU copy for search when faiss has GPUs

    # HTTP API.
    api_max_body_bytes: int = Field(20_000_000, ge=1024)
    api_rate_per_minute: int = Field(600, ge=1)
    # How torch encoders run on the CPU: ONNX Runtime (encoders/load.py) in float32 ("onnxruntime") or quantized where
    # the model ships activation ranges ("onnxruntime-int8", int8.py); "auto" is int8 on CPUs with VNNI, where it was
    # measured, float32 elsewhere; "torch" eager PyTorch.
    cpu_runtime: Literal["auto", "onnxruntime", "onnxruntime-int8", "torch"] = "auto"
    api_failed_auth_per_minute: int = Field(30, ge=1)  # per client address, before it is refused with 429
    api_request_timeout_s: float = Field(60.0, gt=0)
    # Requests that use the models, waiting or running, per worker; one more is answered 503 ``overloaded`` at once.
    api_queue: int = Field(32, ge=1)
    # Concurrent searches, verifies, detects and embeds in a worker share a pass through the models (api/gather.py):
    # at most this many photos per pass, and how long an idle worker waits for requests already arriving.
    api_batch: int = Field(16, ge=1)
    api_batch_wait_ms: float = Field(5.0, ge=0)

    # The web console at /console (``serve --no-console`` turns it off) and how long its sessions live: idle, in all.
    console: bool = True
    console_idle_s: float = Field(1800.0, gt=0)
    console_max_s: float = Field(43200.0, gt=0)

    lock_timeout_s: float = Field(600.0, ge=0)  # how long a writer waits for another writer

    # Logging (stderr): the library logs counts and seconds of batches, rebuilds, migrations and upgrades at INFO.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @field_validator("home", "model", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'idsvc.db'}"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def crops_dir(self) -> Path:
        return self.home / "crops"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def model_cache_dir(self) -> Path:
        """Files derived from a model version alone (its ONNX export), shared by every home of this user: keyed by
        the version, so a new home does not export the same network again."""
        return Path(platformdirs.user_cache_dir("idsvc"))

    @property
    def lock_path(self) -> Path:
        return self.home / "write.lock"


def load_settings(**overrides: object) -> Settings:
    """Build settings from flags (``overrides``; ``None`` means "not given"), environment and defaults.

    Raises ``invalid_argument`` (a usage error, exit 2) naming the flag, or ``invalid_config`` (exit 5) naming the
    ``IDSVC_*`` variable at fault: a bad flag is fixed on the command line, a bad variable in the deployment.
    """
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        if field in given:
            raise IdsvcError("invalid_argument", f"--{field.replace('_', '-')}: {err['msg']}", field=field) from None
        raise IdsvcError("invalid_config", f"IDSVC_{field.upper()}: {err['msg']}", field=field) from None
