"""gsplat's CUDA rasterizer against the pure-PyTorch backend on the same CUDA device.

The two backends promise the same image (gsplat's 'classic' conventions; see
``docs/method.md`` §6 and :mod:`rsatalker_core.render`). gsplat's kernels use fast math, so
float32 images agree to about 1e-4, not bit for bit. CUDA only: skipped cleanly without a
CUDA device or without a usable gsplat CUDA extension.
"""

import os

import pytest
import torch

from rsatalker_core.config import FlameConfig, RenderConfig, resolve_asset
from rsatalker_core.render import rasterize, resolve_backend
from rsatalker_core.render.camera import default_camera
from rsatalker_core.render.gsplat_backend import gsplat_available, gsplat_unavailable_reason
from test_render import camera, random_scene

#: Largest per-pixel difference allowed between the two float32 images.
IMAGE_ATOL = 1e-4

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def cuda():
    if not gsplat_available():
        pytest.skip(f"gsplat unusable: {gsplat_unavailable_reason()}")
    return torch.device("cuda")


def scene_on(device, n, seed, W, H):
    """:func:`test_render.random_scene` and :func:`test_render.camera` on ``device``."""
    return [t.to(device) for t in (*random_scene(n, seed), *camera(W, H))]


def _both(args, W, H, bg):
    out = {}
    for backend in ("gsplat", "torch"):
        out[backend] = rasterize(*args, W, H, bg, backend=backend)
    return out


@pytest.mark.parametrize("W,H,n,seed", [(64, 48, 400, 0), (97, 131, 500, 1)])
def test_random_scene_images_match(cuda, W, H, n, seed):
    bg = torch.tensor([[0.2, 0.5, 0.9]], device=cuda)
    out = _both(scene_on(cuda, n, seed, W, H), W, H, bg)
    (rgb_g, a_g), (rgb_t, a_t) = out["gsplat"], out["torch"]
    assert rgb_g.shape == rgb_t.shape == (1, H, W, 3) and a_g.shape == a_t.shape == (1, H, W, 1)
    assert a_t.max() > 0.5 and a_t.min() < 0.5, "scene should be partly covered"
    assert (rgb_g - rgb_t).abs().max().item() < IMAGE_ATOL
    assert (a_g - a_t).abs().max().item() < IMAGE_ATOL


def test_gradients_agree(cuda):
    W, H = 64, 48
    *scene, view, K = scene_on(cuda, 400, 2, W, H)
    params = [t.clone().requires_grad_(True) for t in scene]
    weights = torch.rand(1, H, W, 3, generator=torch.Generator().manual_seed(3)).to(cuda)
    grads = {}
    for backend in ("gsplat", "torch"):
        rgb, alpha = rasterize(*params, view, K, W, H, backend=backend)
        grads[backend] = torch.autograd.grad((rgb * weights).sum() + alpha.sum(), params)
    for name, g_g, g_t in zip(("means", "quats", "scales", "opacities", "colors"), grads["gsplat"], grads["torch"]):
        assert g_t.abs().max() > 0, name
        rel = ((g_g - g_t).norm() / g_t.norm()).item()
        assert rel < 1e-2, (name, rel)


DEFAULT_AVATAR = resolve_asset("default_avatar.pt")


@pytest.mark.skipif(not os.path.isfile(DEFAULT_AVATAR), reason="default avatar asset not built")
def test_default_avatar_renders_the_same(cuda):
    from rsatalker_core.avatar.gaussians import GaussianAvatar
    from rsatalker_core.head.flame import FlameModel

    flame = FlameModel(FlameConfig()).to(cuda)
    avatar = GaussianAvatar.load(DEFAULT_AVATAR).to(cuda)
    W = H = 128
    view, K = (t.to(cuda) for t in default_camera(RenderConfig(width=W, height=H)))
    motion = torch.zeros(2, 56, device=cuda)
    motion[1, 50] = 0.3  # jaw open
    motion[1, 53:56] = torch.tensor([0.1, -0.2, 0.05])  # head turned, radians
    bg = torch.ones(1, 3, device=cuda)
    assert resolve_backend("auto", cuda) == "gsplat"
    with torch.no_grad():
        g = avatar(flame.forward_motion(motion), flame.faces)
        for i in range(2):
            args = (g["means"][i], g["quats"][i], g["scales"][i], g["opacities"], g["colors"], view, K)
            out = _both(args, W, H, bg)
            (rgb_g, a_g), (rgb_t, a_t) = out["gsplat"], out["torch"]
            assert (a_t < 0.5).any() and (a_t > 0.99).float().mean() > 0.2  # a head on a background
            assert (rgb_g - rgb_t).abs().max().item() < IMAGE_ATOL, i
            assert (a_g - a_t).abs().max().item() < IMAGE_ATOL, i
