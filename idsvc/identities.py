"""Identity bookkeeping: list, show, rename, delete an identity or one template. Deletes remove the rows, the
vectors and the stored crops together, under the write lock."""

from __future__ import annotations

from typing import Any

from idsvc.crash import crash_point
from idsvc.enroll import check_name, name_key
from idsvc.home import Home


def list_identities(home: Home) -> list[dict[str, Any]]:
    return home.registry.identities()


def show_identity(home: Home, name: str) -> dict[str, Any]:
    name = name_key(name)
    ident = home.registry.identity(name)
    ident["template_list"] = home.registry.templates_of(name)
    return ident


def rename_identity(home: Home, old: str, new: str) -> dict[str, Any]:
    new = check_name(new)
    with home.lock.hold():
        return home.registry.rename(name_key(old), new)


def delete_identity(home: Home, name: str) -> dict[str, Any]:
    """Delete an identity, its templates and crops; their vectors are tombstoned in the saved index's manifest
    (no faiss needed, see ``IndexStore.delete_vectors``). Raises ``identity_not_found`` before touching anything."""
    name = name_key(name)
    with home.lock.hold():
        home.registry.identity(name)
        agreed = home.index.agreed_ids()
        ids, crops = home.registry.delete_identity(name)
        crash_point("delete.committed")
        home.index.delete_vectors(agreed)
        home.crops.delete(list(crops))
    return {"identity": name, "deleted_templates": len(ids)}


def delete_template(home: Home, template_id: int) -> dict[str, Any]:
    with home.lock.hold():
        agreed = home.index.agreed_ids()
        crop = home.registry.delete_template(template_id)
        crash_point("delete.committed")
        home.index.delete_vectors(agreed)
        home.crops.delete([crop])
    return {"deleted_template": template_id}
