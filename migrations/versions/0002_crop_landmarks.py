"""Templates remember where the five landmarks sit in their stored crop.

A face that filled its photo is stored as the whole photo, not on idsvc's template, so an encoder with its own
template (SFace's ArcFace 112) must re-align the stored crop from its real landmarks when `reindex --model` re-embeds
it. NULL (every template enrolled before this revision) means "on idsvc's template", which is what they are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("crop_landmarks", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("crop_landmarks")
