"""Enrollment: photos → one unambiguous, good face each → templates in the registry, crops on disk, vectors in the
index.

Bad photos are reported one by one and never half-stored; the others are committed in batches of ``COMMIT_EVERY``, so
a killed run keeps what it finished and a re-run skips images already stored (same sha256) — or, ``atomic`` (an HTTP
request), in one transaction. Photos are detected in groups (same-shape photos share MTCNN passes) and embedded in one
pass per batch, across identities when several are enrolled at once; the index is saved once per call. Paths and
uploads are enrolled alike: ``enroll`` into one named identity, ``enroll_each`` one identity per person folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idsvc.cancel import commit
from idsvc.crash import crash_point
from idsvc.errors import MACHINE_FAILURES, IdsvcError, from_os_error
from idsvc.faces.images import ImageInput, LoadedImage, check_one_person, gather, people_folders, source_name
from idsvc.home import Home
from idsvc.jobs.identities import check_name
from idsvc.jobs.stored_crops import save_crops, stored_landmarks, written_in_transaction
from idsvc.results import Accepted, BulkEnrollResult, EnrollResult, Rejected, Skipped

if TYPE_CHECKING:
    from idsvc.faces.reader import FaceCrop  # a type only: importing the pipeline would load torch for every command

log = logging.getLogger(__name__)
COMMIT_EVERY = 16  # images per registry transaction: progress survives a kill
Progress = Callable[..., None]  # progress(n, total=None)
#: (source name for messages, a function that loads the image): paths for the CLI, bytes for the API.
Item = tuple[str, Callable[[], LoadedImage]]


#: Photos read and detected together: same-shape photos share MTCNN passes (an LFW-like folder is all 250×250), and
#: accepted crops from several identities share one encoder pass. Batches run one after another: detecting the next
#: on a second thread while this one is embedded and stored was measured no faster on 2 cores, which the two halves
#: already keep busy (docs/benchmarks.md).
DETECT_EVERY = 16
#: Photos detected, or crops embedded, in one step of an HTTP enroll (``ModelLock.step``): a search that arrives
#: meanwhile waits for one step (~0.1 s on 2 cores), not for the whole request.
STEP = 2


@dataclass
class _Result:
    """One identity's part of an enroll call."""

    name: str
    existed: bool
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def result(self, version: str, index_behind: bool = False) -> EnrollResult:
        return EnrollResult(identity=self.name, created=bool(self.accepted) and not self.existed,
                            model_version=version, accepted=self.accepted, rejected=self.rejected,
                            skipped=self.skipped, index_behind=index_behind and bool(self.accepted))


class _Session:
    """One enroll call under the write lock: photos are read and checked one by one, detected in same-shape groups,
    embedded in one encoder pass per flush (across identities), committed in one transaction per flush,
    and the index is saved once at the end."""

    def __init__(self, home: Home, names: list[str], aligned: bool) -> None:
        self.home, self.aligned = home, aligned
        self.index: Any = None  # opened under the write lock, where it is changed
        self.results = {n: _Result(n, home.registry.has_identity(n)) for n in names}
        self.seen: dict[str, str] = {}  # sha256 → the identity it was given for in this call
        self.waiting: list[tuple[str, str, LoadedImage]] = []  # read, not yet detected
        self.pending: list[tuple[str, str, LoadedImage, FaceCrop]] = []  # detected and accepted, not yet stored
        self.stopped: IdsvcError | None = None  # the machine failure that ended the call early (``stop``)
        self.index_behind = False

    def read(self, name: str, src: str, load: Callable[[], LoadedImage]) -> None:
        result = self.results[name]
        try:
            image = load()
            verdict = self._known(name, image)
            if verdict is None:
                self.waiting.append((name, src, image))
            else:
                result.skipped.append(Skipped(path=src, reason=verdict))
        except Exception as exc:  # noqa: BLE001 - one photo's unexpected failure costs that photo, not the batch
            result.rejected.append(_rejection(src, exc))

    def detect(self) -> None:
        """The waiting photos' faces, in one batched detection (same-shape photos share MTCNN passes)."""
        if not self.waiting:
            return
        pipeline = self.home.model.pipeline
        try:
            found: list[FaceCrop | Exception] = pipeline.one_faces([im for _, _, im in self.waiting],
                                                                   given_aligned=self.aligned)
        except Exception:  # noqa: BLE001 - a failure of the batch as a whole: each photo alone says which it was
            found = []
            for _, _, image in self.waiting:
                try:
                    found.append(pipeline.one_face(image, given_aligned=self.aligned))
                except Exception as exc:  # noqa: BLE001
                    found.append(exc)
        for (name, src, image), fc in zip(self.waiting, found):
            if isinstance(fc, Exception):
                self.results[name].rejected.append(_rejection(src, fc))
            else:
                self.pending.append((name, src, image, fc))
        self.waiting.clear()

    def embed(self) -> np.ndarray:
        """Every pending crop's vector, in one encoder pass."""
        return self.home.model.pipeline.embed([fc.aligned for *_, fc in self.pending])

    def flush(self, vecs: np.ndarray | None = None) -> None:
        """Store the pending crops (embedded now, or ``vecs`` from ``embed``) in one transaction, crops inside it;
        under the write lock. A photo another writer stored since it was read is skipped or refused as it would have
        been then."""
        from idsvc.storage.registry import NewTemplate

        if not self.pending:
            return
        home, version = self.home, self.home.model.version
        vecs = self.embed() if vecs is None else vecs
        commit()  # past a timed-out request's last chance to stop (idsvc.cancel)
        vecs = self._drop_stored_meanwhile(vecs)
        if not self.pending:
            return
        rows: dict[str, list[int]] = {}  # each identity's pending rows, identities in the order first given
        for i, (name, *_) in enumerate(self.pending):
            rows.setdefault(name, []).append(i)
        order = [i for mine in rows.values() for i in mine]  # the pending rows in the order they are stored
        new = [NewTemplate(embedding=vecs[i], model_version=version, image_sha256=img.sha256,
                           source_path=img.stored_source, box=list(fc.face.box), landmarks=fc.face.landmarks.tolist(),
                           det_prob=fc.face.prob, quality=fc.quality.score(), quality_details=fc.quality.as_dict(),
                           crop_landmarks=stored_landmarks(fc.aligned))
               for i, (_, _, img, fc) in enumerate(self.pending)]
        crops = [self.pending[i][3].aligned.crop for i in order]
        store, undo = written_in_transaction(home.crops, home.registry, partial(_save_crops, home, crops))
        try:
            ids = home.registry.add_templates_many([(name, [new[i] for i in mine]) for name, mine in rows.items()],
                                                   store_crops=store)
        except BaseException:
            undo()
            raise
        crash_point("enroll.committed")
        self.index.add(np.array([tid for group in ids for tid in group]), vecs[order])
        for (name, mine), group in zip(rows.items(), ids):
            self.results[name].accepted += [Accepted(path=self.pending[i][1], template_id=tid,
                                                     quality=self.pending[i][3].quality.report())
                                            for tid, i in zip(group, mine)]
        self.pending.clear()

    def _drop_stored_meanwhile(self, vecs: np.ndarray) -> np.ndarray:
        owners = self.home.registry.enrolled_shas([img.sha256 for _, _, img, _ in self.pending])
        if not owners:
            return vecs
        keep = []
        for i, (name, src, img, _) in enumerate(self.pending):
            owner = owners.get(img.sha256)
            if owner is None:
                keep.append(i)
            elif owner == name:
                self.results[name].skipped.append(Skipped(path=src, reason="already enrolled"))
            else:
                self.results[name].rejected.append(Rejected(path=src, code="already_enrolled", reason=f"{src}: "
                                                            f"already enrolled as {owner!r}"))
        self.pending = [self.pending[i] for i in keep]
        return vecs[keep]

    def stop(self, exc: IdsvcError) -> None:
        """The machine failed under a flush (``MACHINE_FAILURES``): what was committed before stays accepted; the
        photos of the failed flush and every photo not yet stored are rejected with the failure's code."""
        self.stopped = exc
        for name, src, *_ in self.waiting + self.pending:
            self.results[name].rejected.append(_not_stored(src, exc))
        self.waiting.clear()
        self.pending.clear()

    @property
    def stored_any(self) -> bool:
        return any(r.accepted for r in self.results.values())

    def _known(self, name: str, image: LoadedImage) -> str | None:
        """None for a new image (remembered), or why it is skipped: given twice in this call, or stored under
        ``name`` already. Raises ``already_enrolled`` when another identity holds it (here or in the registry)."""
        given = self.seen.get(image.sha256)
        if given is None:
            owner = self.home.registry.enrolled_shas([image.sha256]).get(image.sha256)
            if owner is None:
                self.seen[image.sha256] = name
                return None
            if owner == name:
                return "already enrolled"
            given = owner
        elif given == name:
            return "same image given twice"
        raise IdsvcError("already_enrolled", f"{image.source}: already enrolled as {given!r}", path=image.source,
                         identity=given)


def _save_crops(home: Home, crops: list[np.ndarray], ids: list[int]) -> dict[int, str]:
    return save_crops(home.crops, dict(zip(ids, crops)))


def _not_stored(src: str, exc: IdsvcError) -> Rejected:
    return Rejected(path=src, code=exc.code, reason=f"{src}: not stored ({exc.message})")


def _rejection(src: str, exc: Exception) -> Rejected:
    if not isinstance(exc, IdsvcError):
        log.error("%s: unexpected failure while reading or detecting", src, exc_info=exc)
        exc = from_os_error(exc) or IdsvcError("internal", f"{src}: internal error ({exc.__class__.__name__})")
    return Rejected(path=src, code=exc.code, reason=exc.message)


def enroll_many(home: Home, groups: Sequence[tuple[str, Iterable[Item]]], progress: Progress | None = None, *,
                aligned: bool = False, commit_every: int | None = COMMIT_EVERY) -> list[EnrollResult]:
    """Enroll several identities' photos in one call (``enroll --each``, the API's bulk enroll): one write lock, one
    index save, and detection and embedding batched across identities. ``aligned``: each photo is an aligned face
    crop. ``commit_every``: photos per flush (None: one flush for the call, as an HTTP request is all or nothing).
    Returns, per identity in order, accepted / rejected / skipped with one entry per photo."""
    names = [check_name(n) for n, _ in groups]
    t0 = time.perf_counter()
    if commit_every is None:
        session = _enroll_at_once(home, names, groups, progress, aligned)
    else:
        session = _enroll_in_batches(home, names, groups, progress, aligned, commit_every)
    results = [session.results[n].result(home.model.version, session.index_behind) for n in dict.fromkeys(names)]
    into = repr(results[0].identity) if len(results) == 1 else f"{len(results)} identities"
    log.info("enrolled %d images into %s (%d rejected, %d skipped) in %.2f s",
             sum(len(r.accepted) for r in results), into, sum(len(r.rejected) for r in results),
             sum(len(r.skipped) for r in results), time.perf_counter() - t0)
    return results


def _enroll_at_once(home: Home, names: list[str], groups: Sequence[tuple[str, Iterable[Item]]],
                    progress: Progress | None, aligned: bool) -> _Session:
    """One transaction (an HTTP request): every photo read, detected and embedded first, with the models and without
    the write lock; then, under the write lock, stored. A request waiting for another writer holds no model, so the
    worker's searches go on meanwhile."""
    session = _Session(home, names, aligned)
    for name, (_, items) in zip(names, groups):
        for src, load in items:
            session.read(name, src, load)  # decoding needs no model
            if len(session.waiting) >= STEP:
                with home.busy.step():  # a waiting search goes first
                    session.detect()
            if progress:
                progress(1)
    with home.busy.step():
        session.detect()
    crops = [fc.aligned for *_, fc in session.pending]
    parts = []
    for i in range(0, len(crops), STEP):
        with home.busy.step():
            parts.append(home.model.pipeline.embed(crops[i:i + STEP]))
    vecs = np.concatenate(parts) if parts else None
    with home.lock.hold(), home.busy:
        session.index = home.index.open().index
        _flush(session, vecs)
        if session.stored_any:
            _save_index(session)
    return session


def _enroll_in_batches(home: Home, names: list[str], groups: Sequence[tuple[str, Iterable[Item]]],
                       progress: Progress | None, aligned: bool, commit_every: int) -> _Session:
    """A commit every ``commit_every`` photos (the CLI: a killed run keeps what it finished), under the write lock for
    the whole run, one index save at the end."""
    with home.lock.hold(), home.busy:
        session = _Session(home, names, aligned)
        session.index = home.index.open().index
        for name, (_, items) in zip(names, groups):
            for src, load in items:
                if session.stopped is not None:  # the disk filled up (or the database went): say what was not stored
                    session.results[name].rejected.append(_not_stored(src, session.stopped))
                    continue
                session.read(name, src, load)
                if len(session.waiting) >= DETECT_EVERY:
                    session.detect()
                if len(session.pending) >= commit_every:
                    _flush(session)
                if progress:
                    progress(1)
        if session.stopped is None:
            session.detect()
            _flush(session)
        if session.stored_any:
            _save_index(session)
    return session


def _flush(session: _Session, vecs: np.ndarray | None = None) -> None:
    """``session.flush(vecs)``; a machine failure with templates already committed by this call stops the call (the
    answer lists what was stored), and with none it is raised as it is (nothing was stored: one error)."""
    try:
        session.flush(vecs)
    except IdsvcError as exc:
        if exc.code not in MACHINE_FAILURES or not session.stored_any:
            raise
        log.info("enroll stopped after storing %d templates: %s", sum(len(r.accepted) for r in
                                                                      session.results.values()), exc.message)
        session.stop(exc)


def _save_index(session: _Session) -> None:
    """Save the index after the commits. The registry is the truth: when the index cannot be written (a full disk),
    the templates are stored all the same, the answer says the index is behind, and the next search or ``doctor``
    catches it up from the registry."""
    try:
        session.home.index.save(session.index)
    except IdsvcError as exc:
        if exc.code not in MACHINE_FAILURES:
            raise
        log.info("templates stored; the index could not be saved (%s) and catches up on the next search",
                    exc.message)
        session.index_behind = True


def enroll(home: Home, name: str, images: Sequence[ImageInput], progress: Progress | None = None, *,
           aligned: bool = False, recursive: bool = False, atomic: bool = False) -> EnrollResult:
    """Enroll photos (paths: files, folders, globs; or uploads) into ``name`` (created if new). A folder whose photos
    sit in several sub-folders is refused unless ``recursive`` says they are all this one person. Everything is
    checked before any model loads. Raises ``invalid_argument``, ``file_not_found``."""
    name = check_name(name)
    if not recursive:
        check_one_person([str(i) for i in images if not isinstance(i, tuple)])
    photos = gather(images, keep_missing=True)
    if progress:
        progress(0, total=len(photos))
    pipeline = home.model.pipeline
    items = ((source_name(p), partial(pipeline.read, p)) for p in photos)
    return enroll_many(home, [(name, items)], progress, aligned=aligned,
                       commit_every=None if atomic else COMMIT_EVERY)[0]


def enroll_each(home: Home, images: Sequence[ImageInput], progress: Progress | None = None, *,
                aligned: bool = False, atomic: bool = False) -> BulkEnrollResult:
    """One identity per person folder, named after it (face_recognition's ``known/<name>/``): a folder's
    sub-folders (every name checked before anything is stored), or uploads named ``PERSON/PHOTO`` as a browser sends
    a folder of people folders (one without a valid person folder is rejected in ``unnamed``, the others go on).
    Raises ``file_not_found``, ``invalid_argument``."""
    people: dict[str, list[ImageInput]] = {}
    unnamed: list[Rejected] = []
    folders = [Path(str(i)) for i in images if not isinstance(i, tuple)]
    for folder in folders:
        for name, files in _people(folder).items():
            people.setdefault(name, []).extend(files)
    for image in (i for i in images if isinstance(i, tuple)):
        parts = image[1].replace("\\", "/").split("/")
        try:
            people.setdefault(check_name(parts[-2] if len(parts) >= 2 else ""), []).append(image)
        except IdsvcError:
            unnamed.append(Rejected(path=image[1], code="invalid_argument", reason=f"{image[1]}: name the file "
                                    "PERSON/PHOTO (a valid identity name as its folder)"))
    if progress:
        progress(0, total=sum(len(files) for files in people.values()))
    results: list[EnrollResult] = []
    if people:
        pipeline = home.model.pipeline
        groups = [(name, [(source_name(f), partial(pipeline.read, f)) for f in files])
                  for name, files in people.items()]
        results = enroll_many(home, groups, progress, aligned=aligned,
                              commit_every=None if atomic else COMMIT_EVERY)
    counts = {k: sum(len(getattr(r, k)) for r in results) for k in ("accepted", "rejected", "skipped")}
    return BulkEnrollResult(**({"folder": str(folders[0])} if len(folders) == 1 else {}), identities=results,
                            unnamed=unnamed, accepted=counts["accepted"], skipped=counts["skipped"],
                            rejected=counts["rejected"] + len(unnamed))


def _people(folder: Path) -> dict[str, list[Path]]:
    """A folder's person folders, every name checked. Raises ``file_not_found`` and ``invalid_argument``."""
    if not folder.is_dir():
        raise IdsvcError("file_not_found", f"{folder}: no such folder", path=str(folder))
    people = people_folders(folder)
    if not people:
        raise IdsvcError("invalid_argument", f"{folder} has no sub-folders with photos (one per person)")
    return {check_name(name): files for name, files in people.items()}


