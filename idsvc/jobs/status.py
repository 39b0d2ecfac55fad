"""``status`` and readiness: what a home holds and whether it can answer — read from the model card and the index
manifest, so neither loads the model or the index (``doctor`` looks deeper)."""

from __future__ import annotations

from pathlib import Path

from idsvc.errors import IdsvcError
from idsvc.home import Home
from idsvc.jobs.thresholds import resolve_threshold
from idsvc.results import Ready, Status, StatusIndex, StatusModel
from idsvc.storage.vectors import BEHIND


def status(home: Home, *, server_paths: bool = True) -> Status:
    """Counts, model, threshold and whether the saved index agrees with the registry. Without ``server_paths`` (an
    API key below admin) the home, database URL and index location are withheld and the model is named by its file
    name only."""
    from idsvc.encoders.int8 import numerics
    from idsvc.storage.registry import redact

    settings, model = home.settings, home.model
    manifest, problems = home.index.check_manifest()
    counts = home.registry.counts()
    try:
        thr: float | None
        thr, source = resolve_threshold(home)
    except IdsvcError:
        thr, source = None, None
    path = str(model.path)
    return Status(
        home=str(settings.home) if server_paths else None, db=redact(settings.db_url) if server_paths else None,
        schema=home.registry.schema_revision(),
        model=StatusModel(path=path if server_paths else Path(path).name, name=model.card["name"],
                          version=model.version, embedding_size=model.dim,
                          device=str(model.encoder.device) if model.loaded else f"{settings.device} (not loaded)",
                          numerics=numerics(model.encoder) if model.loaded else None),
        identities=counts["identities"], templates=counts["templates"],
        templates_other_models={v: n for v, n in counts["templates_by_model"].items() if v != model.version},
        index=StatusIndex(kind=(manifest or {}).get("kind"), vectors=(manifest or {}).get("count", 0),
                          in_agreement=not problems, problems=[p["problem"] for p in problems],
                          path=home.index.location() if server_paths else None),
        threshold=thr, threshold_source=source)


def readiness(home: Home) -> Ready:
    """Can this process answer searches now? The model is loaded, the database answers, the saved index agrees
    with the registry. Each check's verdict is "ok" or why not; a probe reports, it never raises."""
    checks = {"model": "ok" if home.model.loaded else "not loaded"}
    try:
        home.registry.counts()
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure to answer is "not ready", said in one line
        checks["database"] = exc.message if isinstance(exc, IdsvcError) else exc.__class__.__name__
    if checks["database"] == "ok":
        _, problems = home.index.check_manifest()
        # behind the registry's last commit: the next search catches up, so that alone does not make us unready
        checks["index"] = "; ".join(p["problem"] for p in problems if p["check"] != BEHIND) or "ok"
    else:
        checks["index"] = "not checked (no database)"
    return Ready(ready=all(v == "ok" for v in checks.values()), checks=checks)
