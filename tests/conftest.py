"""Shared fixtures. Models load once per session; every test gets its own home (SQLite file, FAISS index) on
tmp_path, and real photos from ../shared/data copied into a temp dir (never written in place).

``IDSVC_TEST_BACKEND=postgres-milvus`` runs the same tests on the distributed backends: every test gets a fresh
database on a throwaway PostgreSQL cluster and its own Milvus Lite file, through ``IDSVC_DB`` and ``IDSVC_VECTORS``
(which the CLI, the server and subprocesses all read). Tests that poke at SQLite or FAISS files are marked
``embedded_only`` and skipped there."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from idsvc.settings import DEFAULT_MODEL, SHARED_DATA, Settings, load_settings
from tests.postgres import Cluster

LFW = SHARED_DATA / "lfw" / "images"
CELEBA = SHARED_DATA / "celeba"
SAMPLES = SHARED_DATA / "samples"


BACKEND = os.environ.get("IDSVC_TEST_BACKEND", "sqlite-faiss")


#: Variables the tests themselves read; every other ``IDSVC_*`` is cleared for the run (a developer's ``IDSVC_DB`` must
#: not point the tests at a real database, nor ``IDSVC_MODEL`` change what they measure).
TEST_VARIABLES = {"IDSVC_TEST_BACKEND", "IDSVC_RECORD_ANSWERS", "IDSVC_ARTIFACTS", "IDSVC_TEST_CHROMIUM"}


def pytest_configure(config: pytest.Config) -> None:
    for name in [k for k in os.environ if k.startswith("IDSVC_") and k not in TEST_VARIABLES]:
        del os.environ[name]
    # Derived model files (ONNX exports) are cached per user, keyed by the weights: a regression in the export would
    # pass on any machine that ran the suite before. The run gets its own cache (subprocesses inherit it).
    cache = tempfile.mkdtemp(prefix="idsvc-test-cache-")
    config.stash[CACHE_KEY] = cache
    os.environ["XDG_CACHE_HOME"] = cache
    if not SHARED_DATA.is_dir():
        raise pytest.UsageError(f"the shared photo data is missing: {SHARED_DATA}")
    if BACKEND not in ("sqlite-faiss", "postgres-milvus"):
        raise pytest.UsageError(f"IDSVC_TEST_BACKEND={BACKEND}: use sqlite-faiss or postgres-milvus")


CACHE_KEY = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = config.stash.get(CACHE_KEY, None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND != "sqlite-faiss":
        skip = pytest.mark.skip(reason=f"reads SQLite or FAISS files; not run on {BACKEND}")
        for item in items:
            if "embedded_only" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the session (databases are made per test)."""
    cluster = Cluster(free_port()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty PostgreSQL database."""
    return pg_cluster.new_database()


@pytest.fixture(autouse=True)
def _backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if BACKEND == "postgres-milvus":
        cluster = request.getfixturevalue("pg_cluster")
        monkeypatch.setenv("IDSVC_DB", cluster.new_database())
        monkeypatch.setenv("IDSVC_VECTORS", f"milvus://{tmp_path / 'milvus.db'}")


#: The single FaceNet model, shipped beside the default (a fusion of it and SFace) and selectable with --model.
FACENET_MODEL = DEFAULT_MODEL.with_name("idsvc-facenet.pt")


@pytest.fixture(scope="session")
def model_path() -> Path:
    assert DEFAULT_MODEL.is_file(), f"shipped model missing: {DEFAULT_MODEL}"
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def facenet_path() -> Path:
    """The torch FaceNet checkpoint (what training, the Keras round trip and fusions start from)."""
    assert FACENET_MODEL.is_file(), f"shipped model missing: {FACENET_MODEL}"
    return FACENET_MODEL


@pytest.fixture(scope="session")
def shared_pipeline(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """MTCNN + encoder, loaded once for the whole run, as the active model is loaded (the default CPU runtime)."""
    from idsvc.encoders.load import load_model
    from idsvc.home.pipeline import Pipeline

    s = load_settings(home=tmp_path_factory.mktemp("pipeline-home"), model=model_path, device="cpu")
    return Pipeline(s, load_model(model_path, s))


@pytest.fixture
def settings(tmp_path: Path, model_path: Path) -> Settings:
    return load_settings(home=tmp_path / "home", model=model_path, device="cpu")


@pytest.fixture
def make_service(shared_pipeline):
    """Build a Service on given settings that reuses the session's models."""
    from idsvc.home.pipeline import Pipeline
    from idsvc.service import Service

    made = []

    def make(s: Settings) -> Service:
        pipe = Pipeline(s, shared_pipeline.encoder, shared_pipeline.detector)
        svc = Service(s, encoder=shared_pipeline.encoder, pipeline=pipe)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


@pytest.fixture
def service(settings: Settings, make_service):
    return make_service(settings)


@pytest.fixture
def photos(tmp_path: Path):
    """Copy photos from the shared data into tmp_path: photos("lfw", "Name", 1, 2) → that person's first and second
    available photos (LFW here holds only the photos pairs.txt uses, so numbers have gaps)."""

    def copy(kind: str, name: str, *nums: int) -> list[Path]:
        out = []
        dst_dir = tmp_path / "photos" / name
        dst_dir.mkdir(parents=True, exist_ok=True)
        for n in nums:
            if kind == "lfw":
                src = sorted((LFW / name).glob("*.jpg"))[n - 1]
            elif kind == "samples":
                src = SAMPLES / "test_images" / name / "1.jpg"
            else:
                raise ValueError(kind)
            dst = dst_dir / src.name
            shutil.copy(src, dst)
            out.append(dst)
        return out

    return copy


def search_one(service: Any, photo: Path | str, **options: Any) -> Any:
    """One photo's search result through the service's one search entry (its error raised as raised)."""
    return service.search([str(photo)], **options).one().result()


def verify_one(service: Any, a: Path | str, b: Path | str, **options: Any) -> Any:
    """One pair's verification through the service's one verify entry (its error raised as raised)."""
    return service.verify([(str(a), str(b))], **options).one().result()


def lfw_people(min_photos: int, count: int, offset: int = 0) -> list[tuple[str, int]]:
    """The first ``count`` LFW people (alphabetical, after ``offset``) with at least ``min_photos`` photos."""
    people = []
    for d in sorted(LFW.iterdir()):
        n = len(list(d.glob("*.jpg")))
        if n >= min_photos:
            people.append((d.name, n))
    return people[offset:offset + count]


def copy_celeba(root: Path, identities: int, per_identity: int) -> Path:
    """The first ``identities`` CelebA identity folders, ``per_identity`` photos each, copied under ``root``."""
    for d in sorted(p for p in CELEBA.iterdir() if p.is_dir())[:identities]:
        (root / d.name).mkdir(parents=True)
        for f in sorted(d.glob("*.jpg"))[:per_identity]:
            shutil.copy(f, root / d.name / f.name)
    return root


def small_pairs_file(path: Path, per: int = 2) -> Path:
    """The first ``per`` matched and ``per`` mismatched pairs of each of LFW View 2's ten folds, in pairs.txt form."""
    lines = (SHARED_DATA / "lfw" / "pairs.txt").read_text().splitlines()
    folds, n = (int(x) for x in lines[0].split())
    body = lines[1:]
    out = [f"{folds}\t{per}"]
    for f in range(folds):
        block = body[f * 2 * n:(f + 1) * 2 * n]
        out += block[:per] + block[n:n + per]
    path.write_text("\n".join(out) + "\n")
    return path


def permuted_model(dst: Path, src: Path = FACENET_MODEL) -> str:
    """The shipped FaceNet model with its 128 output dimensions permuted: as accurate, but every embedding is
    incompatible with the original's — a genuinely different model version."""
    import numpy as np
    import torch

    from idsvc.encoders.checkpoint import save_checkpoint
    from idsvc.encoders.load import load_encoder

    enc = load_encoder(src, device="cpu")
    perm = torch.from_numpy(np.random.default_rng(7).permutation(128))
    t = enc.model.trunk
    with torch.no_grad():
        t.last_linear.weight.copy_(t.last_linear.weight[perm])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(t.last_bn, name).copy_(getattr(t.last_bn, name)[perm])
    return save_checkpoint(dst, enc.model, {**enc.card, "name": "permuted"}, fp16=True)["version"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, seconds: float = 120) -> bool:
    """Poll ``base``/v1/health until it answers 200 (an ``idsvc serve`` subprocess loading its model)."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.3)
    return False


def start_server(settings: Settings, service: object) -> tuple[str, Callable[[], None]]:
    """The real API (uvicorn) on a free port of 127.0.0.1, in a thread of this process: (base URL, stop)."""
    import uvicorn

    from idsvc.api import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, service), host="127.0.0.1", port=port,  # type: ignore[arg-type]
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline and thread.is_alive():
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the API server did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture
def live_server(make_service) -> Iterator[Callable[[Settings], str]]:
    """Start servers over Services that reuse the session's models; each is stopped after the test."""
    stops: list[Callable[[], None]] = []

    def start(s: Settings) -> str:
        base, stop = start_server(s, make_service(s))
        stops.append(stop)
        return base

    yield start
    for stop in stops:
        stop()


def make_keys(home: Path) -> dict[str, str]:
    """An API key of each scope (and a revoked admin key) in ``home``, through the real CLI: {scope: secret}."""
    from typer.testing import CliRunner

    from cli.main import app

    keys = {}
    for name, sc in (("reader", "read"), ("writer", "write"), ("boss", "admin"), ("revoked", "admin")):
        r = CliRunner().invoke(app, ["--home", str(home), "--json", "keys", "create", name, "--scope", sc])
        keys[name if name == "revoked" else sc] = json.loads(r.stdout)["key"]
    CliRunner().invoke(app, ["--home", str(home), "keys", "revoke", "revoked"])
    return keys


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_pipeline) -> Iterator[dict[str, Any]]:
    from idsvc.home.pipeline import Pipeline
    from idsvc.service import Service

    home = tmp_path_factory.mktemp("api") / "home"
    keys = make_keys(home)
    s = load_settings(home=home, device="cpu", api_max_body_bytes=3_000_000)
    svc = Service(s, encoder=shared_pipeline.encoder,
                  pipeline=Pipeline(s, shared_pipeline.encoder, shared_pipeline.detector))
    base, stop = start_server(s, svc)
    yield {"base": base, "home": home, "keys": keys}
    stop()
    svc.close()
