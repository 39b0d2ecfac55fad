"""The identity registry: the source of truth. Every template's embedding, model version, image hash and quality
live here; the vector index can always be rebuilt from it. Only this module talks to SQLAlchemy.

SQLite (the default) runs with WAL and foreign keys on; any SQLAlchemy URL works (PostgreSQL for a shared registry).
The schema is Alembic's: a new database is migrated to head on first open.

This module is longer than most on purpose: it is the one owner of SQL (house style), so every query lives here and
nowhere else; its sections follow the tables (identities, templates, model upgrades, thresholds, API keys, meta).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import ArgumentError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError

from idsvc.crash import crash_point
from idsvc.errors import IdsvcError, is_disk_full
from idsvc.results import ApiKey, Caller, Identity, StoredThreshold, Template
from idsvc.settings import packaged
from idsvc.storage import schema as t
from idsvc.storage.vector_checks import as_matrix, vector_problems

MIGRATIONS = packaged("idsvc.migrations", "migrations")
GENERATION = "vectors_generation"
NAMES_GENERATION = "names_generation"
#: The active model's checkpoint path, set by a model switch (``ActiveModel`` reads it).
ACTIVE_MODEL_KEY = "active_model_path"
#: The generation at which a model switch committed: until the next write, a missing index of the new version is the
#: expected state (not yet built), not damage.
UNINDEXED = "unindexed_generation"
#: Built once: every search reads the generation token, and building the statement cost as much as running it.
_GET_META = select(t.meta.c.value).where(t.meta.c.key == bindparam("key"))
log = logging.getLogger(__name__)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()




@dataclass
class NewTemplate:
    """A template ready to store: embedding (D,) float32 L2-normalised plus where it came from."""

    embedding: np.ndarray
    model_version: str
    image_sha256: str
    source_path: str
    box: list[float]
    landmarks: list[list[float]]
    det_prob: float
    quality: float
    quality_details: dict[str, Any] = field(default_factory=dict)
    crop_landmarks: list[list[float]] | None = None  # in the stored crop; None: on idsvc's template


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()  # the repository's alembic.ini is for running the alembic CLI by hand; idsvc needs none
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def make_engine(url: str) -> Engine:
    """An engine for ``url``. Raises ``invalid_config`` for a malformed URL or a missing database driver."""
    try:
        return _make_engine(url)
    except ImportError as exc:
        raise IdsvcError("invalid_config", f"no driver for {redact(url)} ({exc.name or exc}); for PostgreSQL "
                         "install idsvc[postgres]") from None
    except (ArgumentError, ValueError) as exc:
        raise IdsvcError("invalid_config", f"not a database URL: {redact(url)} ({exc})") from None
    except OSError as exc:
        raise IdsvcError("database_unavailable", f"cannot create the database folder for {redact(url)}: "
                         f"{exc.strerror or exc}") from None


def _make_engine(url: str) -> Engine:
    engine = _new_engine(url)
    event.listen(engine, "handle_error", _translate_error)
    return engine


def _translate_error(ctx: ExceptionContext) -> BaseException | None:
    """Database failures that are the machine's, not ours, as the stable codes every skin knows: a full disk under
    the database is ``disk_full``; a database that cannot be reached (refused, dropped, shut down — or a SQLite file
    that cannot be opened) is ``database_unavailable``. The transaction they interrupted was rolled back, so nothing
    is half-written. Constraint violations and our own SQL mistakes stay as they are."""
    exc = ctx.original_exception
    if is_disk_full(exc) or _sqlite_out_of_room(ctx):
        return IdsvcError("disk_full", "the registry database cannot be written: no space left on the device")
    if ctx.is_disconnect or (isinstance(ctx.sqlalchemy_exception, (OperationalError, InterfaceError)) and (
            ctx.connection is None or _UNREACHABLE.search(str(exc)))):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return IdsvcError("database_unavailable", f"the registry database cannot be reached: {reason}")
    return None


def _sqlite_out_of_room(ctx: ExceptionContext) -> bool:
    """SQLite says "disk I/O error", not "disk full", when it cannot grow its shared-memory file (``-shm``) on a full
    device; the device's free space tells the two apart."""
    url = ctx.engine.url if ctx.engine is not None else None
    if url is None or url.get_backend_name() != "sqlite" or "disk i/o error" not in str(ctx.original_exception).lower():
        return False
    try:
        st = os.statvfs(Path(url.database or ".").parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


#: Driver messages of a database that went away mid-session (psycopg, SQLite).
_UNREACHABLE = re.compile(r"server closed|terminating connection|connection (refused|reset|is closed|timed out)|"
                          r"could not connect|shutting down|unable to open database|disk i/o error|no such host",
                          re.IGNORECASE)


def _new_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, revision: str = "head", *, down: bool = False) -> str:
    """Run Alembic to ``revision``; returns the revision the database is at afterwards."""
    from alembic import command
    from alembic.util.exc import CommandError

    t0 = time.perf_counter()
    try:
        with engine.begin() as conn:
            cfg = alembic_config(conn)
            (command.downgrade if down else command.upgrade)(cfg, revision)
    except CommandError as exc:
        raise IdsvcError("invalid_argument", f"cannot migrate to {revision!r}: {exc}", revision=revision) from None
    with engine.connect() as conn:
        now_at = _current_revision(conn)
    log.info("migrated %s %s to %s in %.2f s", redact(str(engine.url)), "down" if down else "up", now_at,
             time.perf_counter() - t0)
    return now_at


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head() or "base"


class Registry:
    """All reads and writes of the database. Each public write is one transaction."""

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            with self.engine.connect() as conn:
                current = _current_revision(conn)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise IdsvcError("database_unavailable", f"cannot open database {redact(url)}: {reason}") from None
        if current != head_revision():
            if not auto_migrate:
                raise IdsvcError("schema_outdated", f"database {redact(url)} is at schema {current}, run "
                                 "`idsvc db upgrade`")
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- identities ---------------------------------------------------------------------------------------------
    def identity(self, name: str) -> Identity:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.identities).where(t.identities.c.name == name)).mappings().first()
            if row is None:
                raise IdsvcError("identity_not_found", f"no identity named {name!r}", name=name)
            count = conn.execute(select(func.count()).select_from(t.templates)
                                 .where(t.templates.c.identity_id == row["id"])).scalar_one()
        return _identity(row, count)

    def has_identity(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(t.identities.c.id).where(t.identities.c.name == name)).first() is not None

    def identities(self) -> list[Identity]:
        counts = (select(t.templates.c.identity_id, func.count().label("n"))
                  .group_by(t.templates.c.identity_id).subquery())
        q = (select(t.identities, func.coalesce(counts.c.n, 0).label("templates"))
             .outerjoin(counts, counts.c.identity_id == t.identities.c.id).order_by(t.identities.c.name))
        with self.engine.connect() as conn:
            return [_identity(r, r["templates"]) for r in conn.execute(q).mappings()]

    def rename(self, old: str, new: str) -> Identity:
        with self.engine.begin() as conn:
            self._identity_id(conn, old)
            try:
                conn.execute(update(t.identities).where(t.identities.c.name == old).values(name=new))
            except IntegrityError:
                raise IdsvcError("identity_exists", f"an identity named {new!r} already exists", name=new) from None
            self._changed(conn)
            self._set_meta(conn, NAMES_GENERATION, uuid.uuid4().hex)  # cached template → identity maps: reload
        return self.identity(new)

    def delete_identity(self, name: str) -> tuple[list[int], list[str]]:
        """Delete the identity and its templates. Returns (template ids, crop paths) for the caller to clean up."""
        with self.engine.begin() as conn:
            ident = self._identity_id(conn, name)
            rows = conn.execute(select(t.templates.c.id, t.templates.c.crop_path)
                                .where(t.templates.c.identity_id == ident)).all()
            conn.execute(delete(t.pending_embeddings).where(
                t.pending_embeddings.c.template_id.in_([r.id for r in rows])))
            conn.execute(delete(t.templates).where(t.templates.c.identity_id == ident))
            conn.execute(delete(t.identities).where(t.identities.c.id == ident))
            self._changed(conn)
        return [r.id for r in rows], [r.crop_path for r in rows if r.crop_path]

    def _identity_id(self, conn: Any, name: str) -> int:
        ident = conn.execute(select(t.identities.c.id).where(t.identities.c.name == name)).scalar()
        if ident is None:
            raise IdsvcError("identity_not_found", f"no identity named {name!r}", name=name)
        return int(ident)

    # -- templates ----------------------------------------------------------------------------------------------
    def enrolled_shas(self, shas: list[str]) -> dict[str, str]:
        """{image sha256: identity name} for the hashes already stored."""
        if not shas:
            return {}
        q = (select(t.templates.c.image_sha256, t.identities.c.name)
             .join(t.identities, t.identities.c.id == t.templates.c.identity_id)
             .where(t.templates.c.image_sha256.in_(set(shas))))
        with self.engine.connect() as conn:
            return {r.image_sha256: r.name for r in conn.execute(q)}

    def add_templates(self, name: str, items: list[NewTemplate], *, metadata: dict | None = None,
                      store_crops: Callable[[list[int]], dict[int, str]] | None = None) -> list[int]:
        """Create the identity if needed (with ``metadata``) and store the templates, all in one transaction.
        ``store_crops(ids)`` writes their crops inside that transaction and returns ``{id: crop path}``, recorded
        before the commit: a template is never visible without its crop, and a kill before the commit leaves only
        unreferenced files (which ``doctor --fix`` sweeps). Returns template ids."""
        return self.add_templates_many([(name, items)], metadata=metadata, store_crops=store_crops)[0]

    def add_templates_many(self, groups: list[tuple[str, list[NewTemplate]]], *, metadata: dict | None = None,
                           store_crops: Callable[[list[int]], dict[int, str]] | None = None) -> list[list[int]]:
        """``add_templates`` for several identities in one transaction (an enroll flush across a library of
        people folders: one commit, not one per person). Returns each group's template ids."""
        with self.engine.begin() as conn:
            out: list[list[int]] = []
            for name, items in groups:
                ident = conn.execute(select(t.identities.c.id).where(t.identities.c.name == name)).scalar()
                if ident is None:
                    ident = _new_id(conn.execute(insert(t.identities).values(
                        name=name, metadata=json.dumps(metadata or {}), created_at=now())))
                out.append([self._insert_template(conn, ident, it) for it in items])
            if store_crops is not None:
                for tid, path in store_crops([tid for ids in out for tid in ids]).items():
                    conn.execute(update(t.templates).where(t.templates.c.id == tid).values(crop_path=path))
                crash_point("enroll.crops_written")
            self._changed(conn)
        return out

    @staticmethod
    def _insert_template(conn: Any, ident: int, it: NewTemplate) -> int:
        try:
            res = conn.execute(insert(t.templates).values(
                identity_id=ident, embedding=to_blob(it.embedding), dim=int(it.embedding.shape[0]),
                model_version=it.model_version, image_sha256=it.image_sha256, source_path=it.source_path,
                box=json.dumps([round(v, 2) for v in it.box]),
                landmarks=json.dumps([[round(x, 2), round(y, 2)] for x, y in it.landmarks]),
                det_prob=it.det_prob, quality=it.quality, quality_details=json.dumps(it.quality_details),
                crop_landmarks=None if it.crop_landmarks is None else json.dumps(
                    [[round(x, 2), round(y, 2)] for x, y in it.crop_landmarks]),
                created_at=now()))
        except IntegrityError:
            raise IdsvcError("already_enrolled", f"{it.source_path}: image already enrolled",
                             path=it.source_path) from None
        return _new_id(res)

    def delete_template(self, template_id: int) -> str | None:
        """Delete one template; returns its crop path. Raises ``template_not_found``."""
        with self.engine.begin() as conn:
            row = conn.execute(select(t.templates.c.crop_path).where(t.templates.c.id == template_id)).first()
            if row is None:
                raise IdsvcError("template_not_found", f"no template {template_id}", template_id=template_id)
            conn.execute(delete(t.templates).where(t.templates.c.id == template_id))
            self._changed(conn)
        return row.crop_path

    def crop_ref(self, template_id: int) -> str | None:
        """Where a template's crop is recorded (None: no crop). Raises ``template_not_found``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.templates.c.crop_path).where(t.templates.c.id == template_id)).first()
        if row is None:
            raise IdsvcError("template_not_found", f"no template {template_id}", template_id=template_id)
        return row.crop_path

    def set_crop_paths(self, paths: dict[int, str], landmarks: dict[int, list[list[float]]] | None = None) -> None:
        """Record where each template's crop is (and, when given, where its landmarks lie in it)."""
        with self.engine.begin() as conn:
            for tid, p in paths.items():
                values: dict[str, Any] = {"crop_path": p}
                if landmarks and tid in landmarks:
                    values["crop_landmarks"] = json.dumps([[round(x, 2), round(y, 2)] for x, y in landmarks[tid]])
                conn.execute(update(t.templates).where(t.templates.c.id == tid).values(**values))

    def templates_of(self, name: str) -> list[Template]:
        cols = [c for c in t.templates.c if c.name != "embedding"]
        with self.engine.connect() as conn:
            ident = self._identity_id(conn, name)
            rows = conn.execute(select(*cols).where(t.templates.c.identity_id == ident)
                                .order_by(t.templates.c.id)).mappings().all()
        return [_template(r) for r in rows]

    def template_rows(self, columns: list[str]) -> list[dict[str, Any]]:
        """Selected columns of every template (for doctor and reindex)."""
        with self.engine.connect() as conn:
            q = select(*[t.templates.c[c] for c in columns]).order_by(t.templates.c.id)
            return [dict(r) for r in conn.execute(q).mappings()]

    def template_ids(self, model_version: str | None = None) -> np.ndarray:
        q = select(t.templates.c.id).order_by(t.templates.c.id)
        if model_version is not None:
            q = q.where(t.templates.c.model_version == model_version)
        with self.engine.connect() as conn:
            return np.fromiter((r[0] for r in conn.execute(q)), dtype=np.int64)

    def iter_embeddings(self, model_version: str, dim: int, batch: int = 50_000,
                        ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids (n,) int64, vectors (n, dim) float32) in id order, streamed so a million rows fit in memory. Raises
        ``vectors_invalid`` at a batch holding a vector search cannot use (``idsvc.storage.vector_checks``)."""
        last = -1
        while True:
            q = (select(t.templates.c.id, t.templates.c.embedding, t.templates.c.dim)
                 .where(t.templates.c.model_version == model_version, t.templates.c.id > last)
                 .order_by(t.templates.c.id).limit(batch))
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
            if not rows:
                return
            ids = [r.id for r in rows]
            yield np.array(ids, dtype=np.int64), as_matrix(ids, [r.embedding for r in rows], dim)
            last = rows[-1].id

    def vector_problems(self, version: str, dim: int, batch: int = 50_000) -> dict[str, list[tuple[int, str]]]:
        """``{model version: [(template id, what is wrong)]}`` for every stored vector search could not use: the
        active ``version``'s at its ``dim``, other versions' (awaiting ``reindex --model``) at their recorded one."""
        out: dict[str, list[tuple[int, str]]] = {}
        last = -1
        while True:
            q = (select(t.templates.c.id, t.templates.c.embedding, t.templates.c.dim, t.templates.c.model_version)
                 .where(t.templates.c.id > last).order_by(t.templates.c.id).limit(batch))
            with self.engine.connect() as conn:
                rows = conn.execute(q).all()
            if not rows:
                return {v: found for v, found in out.items() if found}
            for v in {r.model_version for r in rows}:
                mine = [r for r in rows if r.model_version == v]
                want = dim if v == version else mine[0].dim
                out.setdefault(v, []).extend(vector_problems([r.id for r in mine], [r.embedding for r in mine], want))
            last = rows[-1].id

    def set_embeddings(self, vectors: dict[int, np.ndarray]) -> None:
        """Replace templates' vectors (doctor's repair of a bad vector: re-embedded from its crop), one transaction."""
        with self.engine.begin() as conn:
            for tid, vec in vectors.items():
                conn.execute(update(t.templates).where(t.templates.c.id == tid).values(
                    embedding=to_blob(vec), dim=int(vec.shape[0])))
            self._changed(conn)

    def existing_template_ids(self, ids: list[int]) -> set[int]:
        """Which of ``ids`` are stored (after a failed write: were they committed?)."""
        if not ids:
            return set()
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(t.templates.c.id).where(t.templates.c.id.in_(ids)))}

    def embeddings_by_id(self, ids: list[int]) -> dict[int, tuple[str, np.ndarray]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.templates.c.id, t.templates.c.embedding, t.templates.c.dim,
                                       t.templates.c.model_version).where(t.templates.c.id.in_(ids))).all()
        return {r.id: (r.model_version, as_matrix([r.id], [r.embedding], r.dim)[0]) for r in rows}

    def identity_of_templates(self, ids: list[int] | None = None) -> dict[int, tuple[int, str]]:
        """{template id: (identity id, identity name)} for ``ids``, or for every template when ``ids`` is None."""
        if ids is not None and not ids:
            return {}
        q = (select(t.templates.c.id, t.identities.c.id.label("iid"), t.identities.c.name)
             .join(t.identities, t.identities.c.id == t.templates.c.identity_id))
        if ids is not None:
            q = q.where(t.templates.c.id.in_([int(i) for i in ids]))
        with self.engine.connect() as conn:
            return {r.id: (r.iid, r.name) for r in conn.execute(q)}

    def identity_embeddings(self, name: str, model_version: str, dim: int) -> tuple[np.ndarray, list[str]]:
        """(n, dim) vectors of this identity for this model version, and the versions of any others it has. Raises
        ``vectors_invalid``."""
        with self.engine.connect() as conn:
            ident = self._identity_id(conn, name)
            rows = conn.execute(select(t.templates.c.id, t.templates.c.embedding, t.templates.c.model_version)
                                .where(t.templates.c.identity_id == ident)).all()
        mine = [r for r in rows if r.model_version == model_version]
        others = sorted({r.model_version for r in rows if r.model_version != model_version})
        return as_matrix([r.id for r in mine], [r.embedding for r in mine], dim), others

    def counts(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            n_ident = conn.execute(select(func.count()).select_from(t.identities)).scalar_one()
            by_version = {r.model_version: r.n for r in conn.execute(
                select(t.templates.c.model_version, func.count().label("n")).group_by(t.templates.c.model_version))}
        return {"identities": n_ident, "templates": sum(by_version.values()), "templates_by_model": by_version}

    # -- model upgrades -----------------------------------------------------------------------------------------
    def pending_ids(self, model_version: str) -> set[int]:
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(t.pending_embeddings.c.template_id)
                                               .where(t.pending_embeddings.c.model_version == model_version))}

    def add_pending(self, model_version: str, items: dict[int, np.ndarray]) -> None:
        with self.engine.begin() as conn:
            for tid, vec in items.items():
                conn.execute(insert(t.pending_embeddings).values(
                    template_id=tid, model_version=model_version, embedding=to_blob(vec), dim=int(vec.shape[0])))

    def switch_model(self, model_version: str, model_path: str | None = None) -> int:
        """Move every pending embedding of ``model_version`` into ``templates`` and make ``model_path`` the active
        checkpoint, in one transaction, only if every template has one: a kill leaves the old model or the new one,
        never a mix. Returns how many templates moved."""
        with self.engine.begin() as conn:
            total = conn.execute(select(func.count()).select_from(t.templates)).scalar_one()
            pend = conn.execute(select(t.pending_embeddings.c.template_id, t.pending_embeddings.c.embedding,
                                       t.pending_embeddings.c.dim)
                                .where(t.pending_embeddings.c.model_version == model_version)).all()
            if len(pend) != total:
                raise IdsvcError("upgrade_incomplete", f"{total - len(pend)} templates still lack a {model_version} "
                                 "vector; run `idsvc reindex --model` again")
            for r in pend:
                conn.execute(update(t.templates).where(t.templates.c.id == r.template_id).values(
                    embedding=r.embedding, dim=r.dim, model_version=model_version))
            conn.execute(delete(t.pending_embeddings))
            self._set_meta(conn, "active_model_version", model_version)
            if model_path is not None:
                self._set_meta(conn, ACTIVE_MODEL_KEY, model_path)
            token = self._changed(conn)
            self._set_meta(conn, UNINDEXED, token)
        return len(pend)

    # -- thresholds ---------------------------------------------------------------------------------------------
    def save_threshold(self, model_version: str, value: float, mode: str, target_far: float | None,
                       data_sha256: str, genuine: int, impostor: int, details: dict[str, Any]) -> StoredThreshold:
        with self.engine.begin() as conn:
            conn.execute(insert(t.thresholds).values(
                model_version=model_version, value=value, mode=mode, target_far=target_far, data_sha256=data_sha256,
                genuine_pairs=genuine, impostor_pairs=impostor, details=json.dumps(details), created_at=now()))
        found = self.threshold(model_version)
        if found is None:  # read back in the same process: only a database that drops writes gets here
            raise IdsvcError("internal", f"threshold for {model_version} was not stored")
        return found

    def threshold(self, model_version: str) -> StoredThreshold | None:
        """The latest calibrated threshold for exactly this model version, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.thresholds).where(t.thresholds.c.model_version == model_version)
                               .order_by(t.thresholds.c.id.desc()).limit(1)).mappings().first()
        return _threshold(row) if row else None

    def thresholds(self) -> list[StoredThreshold]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.thresholds).order_by(t.thresholds.c.id)).mappings().all()
        return [_threshold(r) for r in rows]

    # -- export / import ----------------------------------------------------------------------------------------
    def export_rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(identities, templates with their identity's name, thresholds), read in one transaction so the three
        agree with each other."""
        with self.engine.begin() as conn:
            idents = [dict(r) for r in conn.execute(select(t.identities).order_by(t.identities.c.id)).mappings()]
            names = {i["id"]: i["name"] for i in idents}
            temps = [dict(r) | {"identity": names[r["identity_id"]]} for r in
                     conn.execute(select(t.templates).order_by(t.templates.c.id)).mappings()]
            thrs = [dict(r) for r in conn.execute(select(t.thresholds).order_by(t.thresholds.c.id)).mappings()]
        return idents, temps, thrs

    def import_rows(self, identities: list[dict[str, Any]], templates: list[dict[str, Any]],
                    thresholds: list[dict[str, Any]], store_crops: Callable[[dict[int, int]], dict[int, str]],
                    ) -> dict[int, int]:
        """Insert everything in one transaction; ``store_crops({archive id: new id})`` writes the crops (inside the
        transaction, so a failure or a kill before the commit leaves the registry as it was) and returns
        ``{new id: crop path}``. Returns ``{archive id: new id}``. Raises ``identity_exists``, ``already_enrolled``."""
        with self.engine.begin() as conn:
            ident_ids = {}
            for i in identities:
                if conn.execute(select(t.identities.c.id).where(t.identities.c.name == i["name"])).first():
                    raise IdsvcError("identity_exists", f"identity {i['name']!r} exists in this home", name=i["name"])
                ident_ids[i["name"]] = _new_id(conn.execute(insert(t.identities).values(
                    name=i["name"], metadata=json.dumps(i["metadata"]), created_at=_parse_time(i["created_at"]))))
            new_ids = {}
            for row in templates:
                values = {k: row[k] for k in IMPORTED_TEMPLATE_FIELDS}
                try:
                    res = conn.execute(insert(t.templates).values(
                        **values, identity_id=ident_ids[row["identity"]], embedding=to_blob(row["embedding"]),
                        dim=len(row["embedding"]), created_at=_parse_time(row["created_at"])))
                except IntegrityError:
                    raise IdsvcError("already_enrolled", f"image {row['image_sha256'][:12]}… is already enrolled in "
                                     "this home") from None
                new_ids[row["id"]] = _new_id(res)
            for thr in thresholds:
                conn.execute(insert(t.thresholds).values(**{k: thr[k] for k in IMPORTED_THRESHOLD_FIELDS},
                                                         details=json.dumps(thr["details"]),
                                                         created_at=_parse_time(thr["created_at"])))
            for tid, path in store_crops(new_ids).items():
                conn.execute(update(t.templates).where(t.templates.c.id == tid).values(crop_path=path))
            self._changed(conn)
        return new_ids

    # -- copying to another database (idsvc migrate) ---------------------------------------------------------------
    def copy_small_tables(self, source: Registry) -> dict[str, int]:
        """Copy identities, thresholds, API keys and meta rows the target lacks, ids kept (template and vector ids
        must not change), in one transaction. Safe to repeat. Returns rows copied per table."""
        copied = {}
        with source.engine.connect() as src, self.engine.begin() as dst:
            for table in (t.identities, t.thresholds, t.api_keys):
                have = {r[0] for r in dst.execute(select(table.c.id))}
                rows = [dict(r) for r in src.execute(select(table).order_by(table.c.id)).mappings()
                        if r["id"] not in have]
                if rows:
                    dst.execute(insert(table), rows)
                copied[table.name] = len(rows)
            active = src.execute(select(t.meta.c.value).where(t.meta.c.key == "active_model_version")).scalar()
            if active:
                self._set_meta(dst, "active_model_version", active)
        return copied

    def copy_templates(self, source: Registry, crop_path: Callable[[dict[str, Any]], str | None],
                       batch: int = 200) -> Iterator[int]:
        """Copy the templates the target lacks in id order, ``batch`` per transaction, ids kept; yields the count
        after each batch. A killed copy leaves whole batches (a prefix of ids), so running it again goes on from
        the highest id already here. ``crop_path(row)`` places each template's crop and says where it is."""
        with self.engine.connect() as dst:
            last = dst.execute(select(func.max(t.templates.c.id))).scalar() or 0
        while True:
            with source.engine.connect() as src:
                rows = [dict(r) for r in src.execute(select(t.templates).where(t.templates.c.id > last)
                                                     .order_by(t.templates.c.id).limit(batch)).mappings()]
            if not rows:
                return
            for row in rows:
                row["crop_path"] = crop_path(row)
            with self.engine.begin() as dst:
                dst.execute(insert(t.templates), rows)
                self._changed(dst)
            last = rows[-1]["id"]
            yield len(rows)

    def reset_sequences(self) -> None:
        """After rows were inserted with their ids (PostgreSQL): make the id sequences continue past them, so new
        rows never reuse an id. SQLite's AUTOINCREMENT follows inserted ids by itself."""
        if self.engine.dialect.name != "postgresql":
            return
        with self.engine.begin() as conn:
            for table in ("identities", "templates", "thresholds", "api_keys"):
                # table names from the fixed tuple above, never from input
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 # nosec B608
                                     f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")

    # -- API keys -----------------------------------------------------------------------------------------------
    def add_key(self, name: str, scope: str, prefix: str, key_hash: str) -> ApiKey:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t.api_keys).values(name=name, scope=scope, prefix=prefix, key_hash=key_hash,
                                                       created_at=now()))
        except IntegrityError:
            raise IdsvcError("key_exists", f"an API key named {name!r} already exists", name=name) from None
        return next(k for k in self.keys() if k.name == name)

    def keys(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.api_keys).order_by(t.api_keys.c.id)).mappings().all()
        return [ApiKey(name=r["name"], scope=r["scope"], prefix=r["prefix"], created_at=_iso(r["created_at"]),
                       revoked_at=_iso(r["revoked_at"])) for r in rows]

    def key_by_hash(self, key_hash: str) -> Caller | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == key_hash,
                                                        t.api_keys.c.revoked_at.is_(None))).mappings().first()
        return Caller(name=row["name"], scope=row["scope"]) if row else None

    def revoke_key(self, name: str) -> None:
        with self.engine.begin() as conn:
            n = conn.execute(update(t.api_keys).where(t.api_keys.c.name == name, t.api_keys.c.revoked_at.is_(None))
                             .values(revoked_at=now())).rowcount
        if not n:
            raise IdsvcError("key_not_found", f"no active API key named {name!r}", name=name)

    # -- meta ---------------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(_GET_META, {"key": key}).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            self._set_meta(conn, key, value)

    @staticmethod
    def _set_meta(conn: Any, key: str, value: str) -> None:
        if conn.execute(select(t.meta.c.key).where(t.meta.c.key == key)).first():
            conn.execute(update(t.meta).where(t.meta.c.key == key).values(value=value))
        else:
            conn.execute(insert(t.meta).values(key=key, value=value))

    def generation(self) -> str:
        """A token that changes, in the same transaction, with every write that adds, removes or replaces vectors or
        renames their identity: an index (or template → identity map) that recorded the token it was made from is
        current while the token is unchanged — one indexed read per search, however many processes or hosts share
        the registry."""
        return self.get_meta(GENERATION) or "0"

    @classmethod
    def _changed(cls, conn: Any) -> str:
        token = uuid.uuid4().hex
        cls._set_meta(conn, GENERATION, token)
        return token

    def schema_revision(self) -> str:
        with self.engine.connect() as conn:
            return _current_revision(conn)


def _new_id(result: Any) -> int:
    """The primary key an INSERT produced."""
    key = result.inserted_primary_key
    if key is None:  # every table here has an integer primary key, so only a broken driver gets here
        raise IdsvcError("internal", "the database returned no id for a new row")
    return int(key[0])


def _current_revision(conn: Any) -> str:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision() or "base"


def redact(url: str) -> str:
    """A URL fit for messages: the password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<database>"


#: Template and threshold columns an archive carries as they are (ids, links and blobs are remapped).
IMPORTED_TEMPLATE_FIELDS = ("model_version", "image_sha256", "source_path", "box", "landmarks", "det_prob", "quality",
                            "quality_details", "crop_landmarks")
IMPORTED_THRESHOLD_FIELDS = ("model_version", "value", "mode", "target_far", "data_sha256", "genuine_pairs",
                             "impostor_pairs")


def _parse_time(value: str | None) -> dt.datetime:
    return dt.datetime.fromisoformat(value) if value else now()


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat(timespec="seconds")


def _identity(row: Any, count: int) -> Identity:
    return Identity(id=row["id"], name=row["name"], metadata=json.loads(row["metadata"] or "{}"),
                    templates=int(count), created_at=_iso(row["created_at"]))


def _template(row: Any) -> Template:
    return Template(id=row["id"], model_version=row["model_version"], image_sha256=row["image_sha256"],
                    source_path=row["source_path"], box=json.loads(row["box"]), det_prob=row["det_prob"],
                    quality=row["quality"], quality_details=json.loads(row["quality_details"] or "{}"),
                    crop_path=row["crop_path"], created_at=_iso(row["created_at"]))


def _threshold(row: Any) -> StoredThreshold:
    return StoredThreshold(model_version=row["model_version"], value=row["value"], mode=row["mode"],
                           target_far=row["target_far"], data_sha256=row["data_sha256"],
                           genuine_pairs=row["genuine_pairs"], impostor_pairs=row["impostor_pairs"],
                           details=json.loads(row["details"] or "{}"), created_at=_iso(row["created_at"]))
