"""Renderer losses (RSATalker §3.4): L_image = 0.8 L1 + 0.2 D-SSIM, hinge L_pos / L_offset."""

import pytest
import torch

from rsatalker_core.errors import TrainingError
from rsatalker_core.metrics.image import dssim, l1
from rsatalker_core.training.losses import image_loss, image_loss_terms, offset_loss, position_loss


def test_image_loss_is_weighted_l1_plus_dssim_in_both_layouts():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 24, 20, 3, generator=g)
    target = (pred + 0.1 * torch.randn(pred.shape, generator=g)).clamp(0, 1)
    bchw_p, bchw_t = pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)
    expected = 0.8 * l1(bchw_p, bchw_t) + 0.2 * dssim(bchw_p, bchw_t)
    assert torch.allclose(image_loss(pred, target), expected)  # renderer layout [B, H, W, 3]
    assert torch.allclose(image_loss(bchw_p, bchw_t), expected)  # [B, 3, H, W]
    terms = image_loss_terms(pred, target)
    assert torch.allclose(terms["image"], 0.8 * terms["l1"] + 0.2 * terms["dssim"])
    assert float(image_loss(pred, pred)) == pytest.approx(0.0, abs=1e-6)


def test_image_loss_gradient_moves_prediction_towards_target():
    target = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    pred = torch.full_like(target, 0.5, requires_grad=True)
    opt = torch.optim.SGD([pred], lr=5.0)
    first = float(image_loss(pred, target).detach())
    for _ in range(20):
        opt.zero_grad()
        image_loss(pred, target).backward()
        opt.step()
    assert float(image_loss(pred, target).detach()) < 0.5 * first


def test_position_loss_is_a_hinge_on_the_norm():
    mu = torch.tensor([[0.3, 0.4, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, -2.0]], requires_grad=True)
    loss = position_loss(mu, eps=1.0)
    # norms 0.5, 5, 2 -> hinge 0, 4, 1 -> mean 5/3
    assert float(loss.detach()) == pytest.approx(5.0 / 3.0)
    loss.backward()
    assert torch.all(mu.grad[0] == 0)  # inside the tolerance ball: no gradient
    assert torch.allclose(mu.grad[1], torch.tensor([0.6, 0.8, 0.0]) / 3)
    assert mu.grad[2, 2] < 0  # descent raises z = -2 towards 0: negative coordinates are pulled back too
    assert float(position_loss(mu.detach(), mask=torch.tensor([True, False, False]))) == 0.0
    assert float(position_loss(mu.detach(), eps=0.0)) == pytest.approx((0.5 + 5 + 2) / 3)
    with pytest.raises(TrainingError):
        position_loss(mu, mask=torch.tensor([True, False]))
    with pytest.raises(TrainingError):
        position_loss(torch.zeros(4, 2))


def test_offset_loss_batches_and_default_eps_is_one_metre():
    c = torch.zeros(2, 5, 7, 3)
    c[1, 2, 3] = torch.tensor([0.0, 3.0, 0.0])
    assert float(offset_loss(c)) == pytest.approx(2.0 / c[..., 0].numel())
    assert float(offset_loss(0.01 * torch.ones(1, 10, 3))) == 0.0  # centimetre offsets: inactive
    with pytest.raises(TrainingError):
        offset_loss(c, eps=-1.0)
