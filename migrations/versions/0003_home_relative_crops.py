"""Crop paths are recorded relative to the home (``crops/12.png``), so a moved, copied or restored home keeps them.

Before this revision each template recorded its crop's absolute path; after ``mv ~/faces ~/faces-2024`` those paths
named files that were gone, ``doctor`` called the home's own crops leftovers and ``--fix`` removed them. Every
recorded path that names a file in a folder called ``crops`` (the only place idsvc writes crops) becomes
``crops/<name>``; the database alone says nothing of where the home was, and it need not. A path outside any
``crops`` folder is left as it is.

Downgrading leaves the relative paths: an idsvc before this revision reads them relative to its working folder, so
run it from the home (``cd HOME``) or upgrade again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CROP = re.compile(r"^(?:.*[/\\])?crops[/\\]([^/\\]+)$")


def upgrade() -> None:
    conn = op.get_bind()
    templates = sa.table("templates", sa.column("id", sa.Integer), sa.column("crop_path", sa.Text))
    rows = conn.execute(sa.select(templates.c.id, templates.c.crop_path).where(templates.c.crop_path.is_not(None)))
    for tid, path in rows.all():
        m = _CROP.match(path)
        if m and (path.startswith("/") or re.match(r"^[A-Za-z]:[/\\]", path)):
            conn.execute(sa.update(templates).where(templates.c.id == tid).values(crop_path=f"crops/{m.group(1)}"))


def downgrade() -> None:
    pass  # see the module docstring
