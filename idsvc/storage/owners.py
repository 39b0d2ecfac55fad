"""Which identity each template belongs to, in memory: search turns the index's template ids into identities
without a registry query per search.

The map is kept in step with the registry the way the index is, by the registry's generation token (changed by every
write that adds, removes or renames): under a new token the map drops the templates the registry no longer has and
fetches the new ones (ids only move, as in the index's catch-up); a rename, which changes names and no ids, also
changes a second token, and the map is then loaded whole. A steady gallery costs searches no query at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


class Owners:
    def __init__(self, registry: Callable[[], Any]) -> None:
        self._registry = registry
        self._map: dict[int, tuple[int, str]] | None = None
        self._generation: str | None = None
        self._names: str | None = None
        self._counts: tuple[str | None, int, int] = (None, 0, 0)

    def at(self, generation: str) -> dict[int, tuple[int, str]]:
        """{template id: (identity id, name)} for every template the registry holds at ``generation``: the map
        itself, brought up to date if the token moved (read it, do not change it)."""
        owners = self._map
        if owners is None or generation != self._generation:
            owners = self._map = self._synced(owners, generation)
        return owners

    def counts(self, generation: str) -> tuple[int, int]:
        """(identities, templates) the registry holds at ``generation``: the gallery a search is sized for."""
        if self._counts[0] != generation:
            owners = self.at(generation)
            self._counts = (generation, len({who for who, _ in owners.values()}), len(owners))
        return self._counts[1], self._counts[2]

    def _synced(self, owners: dict[int, tuple[int, str]] | None, generation: str) -> dict[int, tuple[int, str]]:
        from idsvc.storage.registry import NAMES_GENERATION

        registry = self._registry()
        names = registry.get_meta(NAMES_GENERATION) or "0"
        if owners is None or names != self._names:
            owners = registry.identity_of_templates()
        else:
            wanted = registry.template_ids()
            have = np.fromiter(owners, dtype=np.int64, count=len(owners))
            for gone in np.setdiff1d(have, wanted).tolist():
                del owners[gone]
            owners.update(registry.identity_of_templates(np.setdiff1d(wanted, have).tolist()))
        self._generation, self._names = generation, names
        return owners
