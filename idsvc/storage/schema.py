"""Table definitions (SQLAlchemy Core). Alembic migrations in ``migrations/`` create exactly these; a test checks
the two agree. Column names are the field names used in CLI JSON and API responses."""

from __future__ import annotations

from sqlalchemy import (
                        Column,
                        DateTime,
                        Float,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

metadata = MetaData()

identities = Table(
    "identities", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_autoincrement=True,
)

# Template ids are FAISS vector ids, so they are never reused (AUTOINCREMENT on SQLite).
templates = Table(
    "templates", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity_id", Integer, ForeignKey("identities.id", ondelete="CASCADE"), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # float32 little-endian, L2-normalised
    Column("dim", Integer, nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("image_sha256", String(64), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("box", Text, nullable=False),         # JSON [x1, y1, x2, y2]
    Column("landmarks", Text, nullable=False),   # JSON [[x, y] * 5]
    Column("det_prob", Float, nullable=False),
    Column("quality", Float, nullable=False),
    Column("quality_details", Text, nullable=False, default="{}"),
    Column("crop_path", Text, nullable=True),
    Column("crop_landmarks", Text, nullable=True),  # JSON [[x, y] * 5] in the stored 160-px crop; NULL: on template
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("image_sha256", name="uq_templates_image_sha256"),
    Index("ix_templates_identity_id", "identity_id"),
    Index("ix_templates_model_version", "model_version"),
    sqlite_autoincrement=True,
)

# Embeddings computed by `reindex --model NEW` before the switch; moved into `templates` in one transaction.
pending_embeddings = Table(
    "pending_embeddings", metadata,
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("embedding", LargeBinary, nullable=False),
    Column("dim", Integer, nullable=False),
)

thresholds = Table(
    "thresholds", metadata,
    Column("id", Integer, primary_key=True),
    Column("model_version", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("mode", String(32), nullable=False),       # "far" or "accuracy"
    Column("target_far", Float, nullable=True),
    Column("data_sha256", String(64), nullable=False),
    Column("genuine_pairs", Integer, nullable=False),
    Column("impostor_pairs", Integer, nullable=False),
    Column("details", Text, nullable=False, default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_thresholds_model_version", "model_version"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
