"""API keys and scopes. A key's secret is shown once and stored as its sha256; scopes nest (read < write < admin)."""

from __future__ import annotations

import hashlib
import secrets

from idsvc.errors import IdsvcError
from idsvc.results import Caller, KeyList, NewKey, RevokedKey
from idsvc.storage.registry import Registry

SCOPES = ("read", "write", "admin")  # each includes the ones before it
PREFIX = "idsvc_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(registry: Registry, name: str, scope: str) -> NewKey:
    """A new key; the returned ``key`` is the only time the secret exists outside the client.
    Raises ``invalid_argument`` and ``key_exists``."""
    if scope not in SCOPES:
        raise IdsvcError("invalid_argument", f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if not name or len(name) > 255 or not name.isprintable():
        raise IdsvcError("invalid_argument", f"invalid key name {name!r} (1-255 printable characters)")
    secret = PREFIX + secrets.token_urlsafe(32)
    key = registry.add_key(name, scope, secret[:10], _digest(secret))
    return NewKey(**dict(key), key=secret)


def list_keys(registry: Registry) -> KeyList:
    return KeyList(keys=registry.keys())


def revoke_key(registry: Registry, name: str) -> RevokedKey:
    """Revoke a key at once. Raises ``key_not_found``."""
    registry.revoke_key(name)
    return RevokedKey(revoked=name)


def authenticate(registry: Registry, secret: str | None, needed: str) -> Caller:
    """The key's record if it exists, is not revoked and has at least scope ``needed``. The lookup is by the
    secret's sha256, so no secret is ever compared character by character.
    Raises ``unauthorized`` or ``forbidden``."""
    if not secret:
        raise IdsvcError("unauthorized", "missing API key (send Authorization: Bearer <key>)")
    key = registry.key_by_hash(_digest(secret))
    if key is None:
        raise IdsvcError("unauthorized", "unknown or revoked API key")
    return require_scope(key, needed)


def require_scope(key: Caller, needed: str) -> Caller:
    """``key`` (what ``authenticate`` returned) if its scope includes ``needed``. Raises ``forbidden``."""
    if SCOPES.index(key.scope) < SCOPES.index(needed):
        raise IdsvcError("forbidden", f"this key has scope {key.scope!r}; {needed!r} is needed",
                         scope=key.scope, needed=needed)
    return key
