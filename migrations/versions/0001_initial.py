"""Initial schema: identities, templates, pending embeddings, thresholds, API keys, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("identity_id", sa.Integer, sa.ForeignKey("identities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("box", sa.Text, nullable=False),
        sa.Column("landmarks", sa.Text, nullable=False),
        sa.Column("det_prob", sa.Float, nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("quality_details", sa.Text, nullable=False),
        sa.Column("crop_path", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("image_sha256", name="uq_templates_image_sha256"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_templates_identity_id", "templates", ["identity_id"])
    op.create_index("ix_templates_model_version", "templates", ["model_version"])
    op.create_table(
        "pending_embeddings",
        sa.Column("template_id", sa.Integer, sa.ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model_version", sa.String(64), primary_key=True),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
    )
    op.create_table(
        "thresholds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("target_far", sa.Float, nullable=True),
        sa.Column("data_sha256", sa.String(64), nullable=False),
        sa.Column("genuine_pairs", sa.Integer, nullable=False),
        sa.Column("impostor_pairs", sa.Integer, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_thresholds_model_version", "thresholds", ["model_version"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_table("api_keys")
    op.drop_index("ix_thresholds_model_version", table_name="thresholds")
    op.drop_table("thresholds")
    op.drop_table("pending_embeddings")
    op.drop_index("ix_templates_model_version", table_name="templates")
    op.drop_index("ix_templates_identity_id", table_name="templates")
    op.drop_table("templates")
    op.drop_table("identities")
