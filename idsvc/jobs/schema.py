"""``idsvc db upgrade|downgrade``: Alembic up or down, without the automatic upgrade that opening the registry does."""

from __future__ import annotations

from idsvc.results import SchemaRevision
from idsvc.settings import Settings
from idsvc.storage.write_lock import ensure_home


def migrate_schema(settings: Settings, revision: str = "head", *, down: bool = False) -> SchemaRevision:
    from idsvc.storage.registry import make_engine, migrate, redact

    url = settings.db_url
    if settings.db is None:
        ensure_home(settings.home)
    engine = make_engine(url)
    try:
        return SchemaRevision(db=redact(url), revision=migrate(engine, revision, down=down))
    finally:
        engine.dispose()
