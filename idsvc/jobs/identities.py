"""Identities: the rule for their names, and their bookkeeping — list, show, rename, delete an identity or one
template. Deletes remove the rows, the vectors and the stored crops together, under the write lock."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from idsvc.crash import crash_point
from idsvc.errors import IdsvcError
from idsvc.results import DeletedIdentity, DeletedTemplate, Identity, IdentityDetail, IdentityList

if TYPE_CHECKING:
    from idsvc.home import Home

#: Characters a name may not hold anywhere: C0/C1 controls and DEL, and the invisible or bidi formatting characters
#: (soft hyphen, zero-width, LRM/RLM, embeddings and overrides, isolates, line/paragraph separators, BOM) that make
#: two names look alike or reorder what an operator reads. Written as ranges so Python and ECMA read them alike.
_FORBIDDEN = (r"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
              r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb")
#: An identity name: 1-255 characters, no slash, backslash or forbidden character, no whitespace at either end, not
#: "." or ".." (a client's URL handling would turn /v1/identities/.. into another route). The same pattern is the
#: API's documented path and body schema (ECMA and Python read it alike).
_END = r"[^\s/\\" + _FORBIDDEN + "]"  # first or last character: no whitespace either
_END_NOT_DOT = r"[^\s/\\." + _FORBIDDEN + "]"
_MIDDLE = r"[^/\\" + _FORBIDDEN + "]"
#: Spelled out by length rather than with a look-ahead, which pydantic's regex engine does not take: one character
#: (not "."), two (not ".."), or three to 255.
NAME_PATTERN = (f"^(?:{_END_NOT_DOT}|{_END_NOT_DOT}{_END}|\\.{_END_NOT_DOT}|{_END}{_MIDDLE}{{1,253}}{_END})$")
NAME_RE = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """An identity name in Unicode NFC (so "é" typed two ways is one identity): 1-255 characters, no slashes,
    control, invisible or bidi characters, no surrounding spaces, not "." or "..". Returns the normalised name;
    raises ``invalid_argument``."""
    normal = name_key(name)
    if not NAME_RE.fullmatch(normal) or normal.strip() != normal:
        raise IdsvcError("invalid_argument", f"invalid identity name {name!r} (1-255 characters, no slashes, "
                         "no control, invisible or bidi characters, no surrounding spaces, not '.' or '..')",
                         name=name)
    return normal


def name_key(name: str) -> str:
    """How a name given to look an identity up is compared with stored names (stored names are NFC)."""
    return unicodedata.normalize("NFC", name)


def list_identities(home: Home) -> IdentityList:
    return IdentityList(identities=home.registry.identities())


def show_identity(home: Home, name: str, *, server_paths: bool = True) -> IdentityDetail:
    """An identity and its templates. Without ``server_paths`` (an API key below admin), each template's source is
    only its file name and its crop path is withheld: a client has no use for the server's folders."""
    name = name_key(name)
    ident = home.registry.identity(name)
    templates = home.registry.templates_of(name)
    if not server_paths:
        templates = [t.model_copy(update={"source_path": _file_name(t.source_path), "crop_path": None})
                     for t in templates]
    else:  # recorded relative to the home (which may have moved); an operator wants the file
        templates = [t.model_copy(update={"crop_path": str(home.crops.resolve(t.crop_path))}) if t.crop_path else t
                     for t in templates]
    return IdentityDetail(**dict(ident), template_list=templates)


def template_crop(home: Home, template_id: int) -> bytes:
    """A template's stored crop (PNG bytes), found by its id — never by a path a client names. Raises
    ``template_not_found``, ``crop_missing``."""
    ref = home.registry.crop_ref(template_id)
    if ref is None or not home.crops.exists(ref):
        raise IdsvcError("crop_missing", f"template {template_id} has no stored crop", template_id=template_id)
    return home.crops.read_bytes(ref)


def _file_name(path: str | None) -> str | None:
    """A template's source as a client may see it: the file name of a server path, an upload's label as it is."""
    if path is None or path.startswith("upload:"):
        return path
    return Path(path).name


def rename_identity(home: Home, old: str, new: str) -> Identity:
    new = check_name(new)
    with home.lock.hold():
        return home.registry.rename(name_key(old), new)


def delete_identity(home: Home, name: str) -> DeletedIdentity:
    """Delete an identity, its templates and crops; their vectors are tombstoned in the saved index's manifest
    (no faiss needed, see ``FaissStore.delete_vectors``). Raises ``identity_not_found`` before touching anything."""
    name = name_key(name)
    with home.lock.hold(), home.busy:  # (the write lock first: see Home.busy)
        home.registry.identity(name)
        agreed = home.index.agreed_ids()
        ids, crops = home.registry.delete_identity(name)
        crash_point("delete.committed")
        home.index.delete_vectors(agreed)
        home.crops.delete(list(crops))
    return DeletedIdentity(identity=name, deleted_templates=len(ids))


def delete_template(home: Home, template_id: int) -> DeletedTemplate:
    with home.lock.hold(), home.busy:
        agreed = home.index.agreed_ids()
        crop = home.registry.delete_template(template_id)
        crash_point("delete.committed")
        home.index.delete_vectors(agreed)
        home.crops.delete([crop])
    return DeletedTemplate(deleted_template=template_id)
