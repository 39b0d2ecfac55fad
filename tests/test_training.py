"""Real training runs on CelebA photos (CPU): a resume with a changed recipe is refused (fast); fine-tuning with
center loss and a compact net from scratch (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from idsvc.errors import IdsvcError
from idsvc.settings import load_settings
from idsvc.training import TrainConfig, train
from tests.conftest import copy_celeba


def test_resume_with_a_changed_recipe_is_refused(tmp_path, facenet_path):
    data = copy_celeba(tmp_path / "celeba", 3, 4)
    s = load_settings(home=tmp_path / "home", model=facenet_path, device="cpu")
    cfg = TrainConfig(data_dir=data, out=tmp_path / "c.pt", arch="compact", epochs=2, batch_size=6, max_steps=1,
                      device="cpu", center_lambda=0.01)
    train(cfg, s)
    assert sorted(p.name for p in (tmp_path / "c.checkpoints").iterdir()) == ["epoch-001.pt"]
    changed = TrainConfig(**{**cfg.__dict__, "resume": True, "center_lambda": 0.1, "lr": 0.01})
    with pytest.raises(IdsvcError) as err:
        train(changed, s)
    assert err.value.code == "invalid_argument" and err.value.details["changed"] == ["center_lambda", "lr"]
    assert "center_lambda 0.01 → 0.1" in err.value.message
    # Where it runs and for how long may change: that resume goes ahead.
    train(TrainConfig(**{**cfg.__dict__, "resume": True, "max_steps": 2, "epochs": 3}), s)
    with pytest.raises(IdsvcError) as err:
        train(TrainConfig(**{**cfg.__dict__, "out": tmp_path / "other.pt", "resume": True}), s)
    assert err.value.code == "file_not_found"


@pytest.mark.parametrize("change, code", [({"arch": "resnet"}, "invalid_argument"),
                                          ({"optimizer": "lbfgs"}, "invalid_argument"),
                                          ({"batch_size": 1}, "invalid_argument"),
                                          ({"center_alpha": 0.0}, "invalid_argument")])
def test_bad_recipes_are_refused_before_any_work(tmp_path, facenet_path, change, code):
    data = copy_celeba(tmp_path / "celeba", 2, 2)
    s = load_settings(home=tmp_path / "home", model=facenet_path, device="cpu")
    with pytest.raises(IdsvcError) as err:
        train(TrainConfig(**{"data_dir": data, "out": tmp_path / "c.pt", "arch": "compact", "device": "cpu",
                             **change}), s)
    assert err.value.code == code


@pytest.fixture
def small_celeba(tmp_path):
    """Six real CelebA identities, ten photos each, copied into tmp_path."""
    return copy_celeba(tmp_path / "celeba", 6, 10)


@pytest.mark.slow
def test_fine_tuning_few_steps_center_term_active_and_resume(small_celeba, tmp_path, facenet_path):
    s = load_settings(home=tmp_path / "home", model=facenet_path, device="cpu")
    out = tmp_path / "model.pt"
    events = []
    cfg = TrainConfig(data_dir=small_celeba, out=out, init=facenet_path, freeze_through="repeat_3", epochs=3,
                      batch_size=16, lr=5e-3, lr_backbone=1e-3, center_lambda=0.5, center_alpha=0.5,
                      warmup_epochs=0, device="cpu", name="test")
    train(cfg, s, events.append)
    epochs = [e for e in events if e["phase"] == "epoch"]
    steps = [e for e in events if e["phase"] == "step"]
    assert len(epochs) == 3
    assert np.mean([e["loss"] for e in steps[-3:]]) < np.mean([e["loss"] for e in steps[:3]])  # loss falls
    assert epochs[-1]["intra_class_distance"] < epochs[0]["intra_class_distance"]  # classes tighten
    assert all(e["center"] > 0 for e in steps)  # the center term is active
    card = json.loads((tmp_path / "model.pt.card.json").read_text())
    assert card["training"]["config"]["center_lambda"] == 0.5 and card["training"]["identities"] == 6

    # Centres moved from their start (class means of the pretrained features).
    ckpts = sorted((tmp_path / "model.checkpoints").glob("epoch-*.pt"))
    c1 = torch.load(ckpts[0], weights_only=False)["loss"]["terms.center.centers"]
    c3 = torch.load(ckpts[-1], weights_only=False)["loss"]["terms.center.centers"]
    assert (c3 - c1).norm() > 0

    # --resume continues from the last epoch checkpoint instead of starting over.
    ckpts[-1].unlink()  # as if killed during epoch 3
    events.clear()
    train(TrainConfig(**{**cfg.__dict__, "resume": True}), s, events.append)
    resumed = [e for e in events if e["phase"] == "resume"]
    assert resumed and resumed[0]["epoch"] == 2
    assert [e["epoch"] for e in events if e["phase"] == "epoch"] == [3]


@pytest.mark.slow
def test_compact_net_trains_from_scratch_with_augmentation(small_celeba, tmp_path, facenet_path):
    s = load_settings(home=tmp_path / "home", model=facenet_path, device="cpu")
    events = []
    card = train(TrainConfig(data_dir=small_celeba, out=tmp_path / "c.pt", arch="compact", epochs=1,
                             batch_size=12, max_steps=4, device="cpu"), s, events.append)
    assert card["arch"] == "compact" and card["preprocessing"]["input_size"] == 112
    assert len([e for e in events if e["phase"] == "step"]) == 4
    from idsvc.encoders.load import load_encoder

    enc = load_encoder(tmp_path / "c.pt", device="cpu")
    e = enc.embed(np.zeros((2, 112, 112, 3), np.uint8))
    assert e.shape == (2, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)


def test_batches_are_cut_and_augmented_where_the_crops_are(tmp_path):
    """``augment`` + ``normalise`` on a uint8 tensor (the GPU path: no numpy round trip) gives what the host path
    gave — augment, round to uint8, ``preprocess`` — for the same generator state, on real crops."""
    from idsvc.encoders.torch_encoder import normalise, preprocess
    from idsvc.faces.images import load_image
    from idsvc.training.data import augment
    from tests.conftest import CELEBA

    paths = sorted(next(iter(sorted(CELEBA.iterdir()))).glob("*.jpg"))[:4]
    crops = np.stack([np.ascontiguousarray(load_image(p, max_pixels=10**8, min_side=8).pixels[:128, :128])
                      for p in paths])
    pixels = torch.from_numpy(crops)
    for norm in ("prewhiten", "fixed"):
        ours = normalise(augment(pixels.permute(0, 3, 1, 2).float(), True, torch.Generator().manual_seed(3)).round(),
                         norm)
        raw = augment(torch.from_numpy(crops).permute(0, 3, 1, 2).float(), True, torch.Generator().manual_seed(3))
        host = preprocess(raw.permute(0, 2, 3, 1).round().byte().numpy(), norm)
        assert ours.shape == (4, 3, 128, 128) and torch.equal(ours, host)
        assert not torch.equal(ours, preprocess(crops, norm))  # the augmentation did change the crops


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_keeps_crops_and_augmentation_there(small_celeba, tmp_path, facenet_path):
    s = load_settings(home=tmp_path / "home", model=facenet_path, device="cuda")
    cfg = TrainConfig(data_dir=small_celeba, out=tmp_path / "g.pt", arch="compact", epochs=1, batch_size=16,
                      device="cuda", center_lambda=0.01)
    summary = train(cfg, s)
    assert summary["device"].startswith("cuda") and (tmp_path / "g.pt").is_file()
