"""Cold wall time of CLI commands, each a fresh process (median of --repeat runs), beside the floors every command
that embeds a face pays: `python -c "import torch"`, and the bare libraries loading what the shipped default needs —
facenet-pytorch's MTCNN and Inception-ResNet-v1, the FaceNet weights, and SFace in an ONNX Runtime session.

    python bench/cli_latency.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._util import table
from idsvc.settings import SHARED_DATA

IDSVC = shutil.which("idsvc") or "idsvc"
FLOOR_MODEL = ("import torch, onnxruntime as ort; from facenet_pytorch import MTCNN, InceptionResnetV1; MTCNN(); "
               "InceptionResnetV1(); torch.load('{facenet}', weights_only=True); "
               "ort.InferenceSession(torch.load('{sface}', weights_only=True)['onnx'])")


def cold(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    """Median wall seconds of ``cmd`` over ``repeat`` fresh processes."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from idsvc.settings import DEFAULT_MODEL

    facenet = DEFAULT_MODEL.with_name("idsvc-facenet.pt")
    photos = sorted((SHARED_DATA / "lfw" / "images" / "George_W_Bush").glob("*.jpg"))[:52]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "IDSVC_HOME": str(Path(tmp) / "home")}
        subprocess.run([IDSVC, "enroll", "bush", str(photos[0]), str(photos[1])], env=env, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probes = Path(tmp) / "probes"
        probes.mkdir()
        for p in photos[2:52]:
            shutil.copy(p, probes / p.name)
        a, b = str(photos[2]), str(photos[3])
        rows = []
        for label, cmd in [
            ("python -c 'import torch' (floor)", [sys.executable, "-c", "import torch"]),
            ("bare MTCNN + FaceNet + SFace load (floor)",
             [sys.executable, "-c", FLOOR_MODEL.format(facenet=facenet, sface=facenet.with_name("idsvc-sface.pt"))]),
            ("idsvc --help", [IDSVC, "--help"]),
            ("idsvc --version", [IDSVC, "--version"]),
            ("idsvc status", [IDSVC, "status"]),
            ("idsvc identities list", [IDSVC, "identities", "list"]),
            ("idsvc verify a b (default: fusion)", [IDSVC, "verify", a, b]),
            ("idsvc verify a b (--model FaceNet)", [IDSVC, "--model", str(facenet), "verify", a, b]),
            ("idsvc search, 1 photo", [IDSVC, "search", a]),
            ("idsvc search, 50 photos in one call", [IDSVC, "search", str(probes)]),
        ]:
            rows.append([label, cold(cmd, env, args.repeat)])
    floor = rows[1][1]
    print(f"# cold CLI wall time, median of {args.repeat} — {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(table(["command", "seconds", "× the model-load floor"], [[r[0], r[1], r[1] / floor] for r in rows]))


if __name__ == "__main__":
    main()
