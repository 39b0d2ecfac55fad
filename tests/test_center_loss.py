"""Center loss and the weighted sum against the formulas written out."""

from __future__ import annotations

import pytest
import torch

from idsvc.training.center_loss import CenterLoss


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


def test_center_loss_under_fp16_matches_the_formula_in_float32():
    """Features come out of a CUDA autocast region in float16; the loss and the centre update run in float32."""
    torch.manual_seed(0)
    cl = CenterLoss(3, 8, alpha=0.5)
    cl.centers.normal_()
    x = torch.randn(6, 8).half()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    expected = 0.5 * ((x.float() - cl.centers[y]) ** 2).sum(1).mean()
    loss = cl(x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.allclose(loss, expected, atol=1e-5)
    before = cl.centers.clone()
    cl.update_centers(x, y)
    assert cl.centers.dtype == torch.float32 and not torch.equal(before, cl.centers)
    big = torch.full((2, 8), 6e4).half()  # near float16's limit: squared in float16 it would overflow to inf
    assert torch.isfinite(cl(big, torch.tensor([0, 1])))


def test_weighted_sum_is_softmax_plus_lambda_center():
    from idsvc.training.softmax_loss import SoftmaxLoss
    from idsvc.training.weighted_sum import WeightedSum

    torch.manual_seed(1)
    soft, center = SoftmaxLoss(8, 3), CenterLoss(3, 8)
    center.centers.normal_()
    loss = WeightedSum({"softmax": (1.0, soft), "center": (0.25, center)})
    x, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 1, 0])
    total, parts = loss(x, y)
    ce = torch.nn.functional.cross_entropy(soft.classifier(x), y)
    cen = 0.5 * ((x - center.centers[y]) ** 2).sum(1).mean()
    assert torch.allclose(parts["softmax"], ce) and torch.allclose(parts["center"], cen)
    assert torch.allclose(total, ce + 0.25 * cen)
    assert [n for n, _ in loss.named_parameters()] == ["terms.softmax.classifier.weight",
                                                       "terms.softmax.classifier.bias"]  # centres are no parameter
