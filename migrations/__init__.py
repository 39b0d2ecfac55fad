"""Alembic migrations of the registry. A package only so that the wheel ships them (as ``idsvc.migrations``)."""
