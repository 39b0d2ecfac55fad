"""The package as a user installs it: a wheel built from this checkout, installed into a fresh virtual environment
(its dependencies come from the running environment), run from a folder outside the repository."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import LFW

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    import shutil

    src, dist = tmp_path / "src", tmp_path / "dist"  # a clean copy: no stale build/ of the checkout gets in
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".scratch", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "carry", ".venv"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, timeout=600)
    wheel, = dist.glob("idsvc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"idsvc/api/app.py", "idsvc/training/loop.py", "idsvc/migrations/env.py",
            "idsvc/migrations/versions/0001_initial.py", "idsvc/models/idsvc-default.pt",
            "idsvc/models/idsvc-facenet.pt", "idsvc/models/idsvc-sface.pt", "cli/main.py",
            "idsvc/models/facenet-keras-0e687949230c.int8.json",  # the int8 path's ranges
            "idsvc/api/console/templates/base.html", "idsvc/api/console/static/console.js",
            "idsvc/api/console/static/console.css"} <= names  # the console's pages and files
    modules = {str(f.relative_to(ROOT)) for f in (ROOT / "idsvc").rglob("*.py") if "__pycache__" not in f.parts}
    assert modules - names == set()  # every module of every layer's folder, so every subpackage is listed
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # The dependencies come from the running environment. --system-site-packages shows the *base* interpreter's
    # packages, which are not these when the tests run inside a virtual environment: name this environment's
    # site-packages in a .pth file (plain paths: .pth files in them, such as the checkout's editable install, are not
    # read, so `import idsvc` finds the wheel's copy).
    here = [p for p in site.getsitepackages() if Path(p).is_dir()]
    there = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                           text=True, check=True).stdout.strip()
    (Path(there) / "_running_environment.pth").write_text("\n".join(here) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=600)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSVC_")} | {"IDSVC_HOME": str(tmp_path / "h")}

    def idsvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "idsvc"), *args], cwd=away, env=env, capture_output=True,
                              text=True, timeout=600)

    where = subprocess.run([str(py), "-c", "import idsvc, idsvc.settings as s; print(idsvc.__file__); "
                            "print(s.DEFAULT_MODEL)"], cwd=away, env=env, capture_output=True, text=True, check=True)
    module, model = where.stdout.split()
    assert module.startswith(str(venv)) and model.startswith(str(venv))  # the wheel's files, not the checkout's
    r = idsvc("--version")
    assert r.returncode == 0 and r.stdout.startswith("idsvc ")
    r = idsvc("--json", "status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "0003"
    colin = sorted((LFW / "Colin_Powell").glob("*.jpg"))
    r = idsvc("--json", "enroll", "colin", str(colin[0]), str(colin[1]), str(colin[2]))
    assert r.returncode in (0, 2) and len(json.loads(r.stdout)["accepted"]) >= 2, r.stdout + r.stderr
    r = idsvc("--json", "search", str(colin[3]))
    assert r.returncode == 0 and json.loads(r.stdout)["identity"] == "colin"
