"""Center loss against the formula written out, and a few real training steps on CelebA photos (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from idsvc.training.center_loss import CenterLoss
from idsvc.settings import load_settings
from idsvc.training import TrainConfig, train
from tests.conftest import copy_celeba


def test_loss_is_half_mean_squared_distance_to_class_centre():
    cl = CenterLoss(num_classes=3, dim=2, alpha=0.5)
    cl.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    y = torch.tensor([0, 1, 2])
    # by hand: |(1,0)-(0,0)|² = 1, |(1,3)-(1,1)|² = 4, |(0,0)-(2,0)|² = 4 → ½ · mean(1, 4, 4) = 1.5
    assert cl(x, y).item() == pytest.approx(1.5)


def test_centre_update_follows_the_paper():
    cl = CenterLoss(num_classes=2, dim=1, alpha=0.5)
    cl.centers.copy_(torch.tensor([[0.0], [10.0]]))
    x = torch.tensor([[2.0], [4.0], [7.0]])
    y = torch.tensor([0, 0, 0])
    cl.update_centers(x, y)
    # Δc0 = Σ(c0 − x_i)/(1 + n) = (−2 − 4 − 7)/4 = −3.25; c0 ← 0 − 0.5·(−3.25) = 1.625. Class 1 unseen: unchanged.
    assert cl.centers[0, 0].item() == pytest.approx(1.625)
    assert cl.centers[1, 0].item() == pytest.approx(10.0)


def test_gradient_flows_to_features_not_centres():
    cl = CenterLoss(num_classes=2, dim=3)
    x = torch.randn(4, 3, requires_grad=True)
    cl(x, torch.tensor([0, 1, 0, 1])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not cl.centers.requires_grad


@pytest.fixture
def small_celeba(tmp_path):
    """Six real CelebA identities, ten photos each, copied into tmp_path."""
    return copy_celeba(tmp_path / "celeba", 6, 10)


def test_fine_tuning_few_steps_center_term_active_and_resume(small_celeba, tmp_path, model_path):
    s = load_settings(home=tmp_path / "home", model=model_path, device="cpu")
    out = tmp_path / "model.pt"
    events = []
    cfg = TrainConfig(data_dir=small_celeba, out=out, init=model_path, freeze_through="repeat_3", epochs=3,
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


def test_compact_net_trains_from_scratch_with_augmentation(small_celeba, tmp_path, model_path):
    s = load_settings(home=tmp_path / "home", model=model_path, device="cpu")
    events = []
    card = train(TrainConfig(data_dir=small_celeba, out=tmp_path / "c.pt", arch="compact", epochs=1,
                             batch_size=12, max_steps=4, device="cpu"), s, events.append)
    assert card["arch"] == "compact" and card["preprocessing"]["input_size"] == 112
    assert len([e for e in events if e["phase"] == "step"]) == 4
    from idsvc.encoder import load_encoder

    enc = load_encoder(tmp_path / "c.pt", device="cpu")
    e = enc.embed(np.zeros((2, 112, 112, 3), np.uint8))
    assert e.shape == (2, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
