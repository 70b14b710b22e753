"""The inference binding (numba, rsatalker_core/avatar/binding_numba.py) against the torch
path of GaussianAvatar.forward: same Gaussians to float32 rounding, offsets included, every
branch of the rotation-to-quaternion closed form exercised by randomly rotated meshes."""

import math

import pytest
import torch

pytest.importorskip("numba")

from rsatalker_core.avatar.binding_numba import bind_gaussians  # noqa: E402
from rsatalker_core.avatar.gaussians import GaussianAvatar, rotmat_to_quat, triangle_frames  # noqa: E402


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    q = torch.randn(4, generator=g, dtype=torch.float64)
    w, x, y, z = (q / q.norm()).tolist()
    return torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ], dtype=torch.float32)


def _scene(seed: int = 0, B: int = 3):
    g = torch.Generator().manual_seed(seed)
    V, F = 60, 80
    rest = torch.randn(V, 3, generator=g) * 0.05
    faces = torch.stack([torch.randperm(V, generator=g)[:3] for _ in range(F)])
    avatar = GaussianAvatar.from_mesh(rest, faces, per_triangle=torch.randint(1, 4, (F,), generator=g))
    with torch.no_grad():
        for p in (avatar.means_local, avatar.log_scales, avatar.quats_local):
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    verts = torch.stack([rest @ _random_rotation(g).T + 0.01 * torch.randn(V, 3, generator=g) for _ in range(B)])
    offsets = 0.002 * torch.randn(B, F, 3, generator=g)
    return avatar, verts, faces, offsets


@pytest.mark.parametrize("with_offsets", [False, True])
def test_inference_binding_matches_the_torch_path(with_offsets):
    avatar, verts, faces, offsets = _scene()
    off = offsets if with_offsets else None
    with torch.no_grad():
        fast = avatar(verts, faces, off)  # numba
    with torch.enable_grad():
        ref = avatar(verts, faces, off)  # torch ops, differentiable
    assert ref["means"].requires_grad and not fast["means"].requires_grad
    for key in ("means", "quats", "scales"):
        assert fast[key].dtype == ref[key].dtype == torch.float32
        assert fast[key].shape == ref[key].shape
        torch.testing.assert_close(fast[key], ref[key].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast["opacities"], ref["opacities"].detach())
    if with_offsets:  # the offsets really move the means (per triangle, through the binding)
        with torch.no_grad():
            plain = avatar(verts, faces)["means"]
        moved = offsets[:, avatar.binding]
        torch.testing.assert_close(fast["means"] - plain, moved, rtol=1e-4, atol=1e-6)


def test_every_quaternion_branch_and_float64():
    """Rotated frames pick each of the four closed forms somewhere; float64 inputs stay
    float64 and agree to ~1e-12."""
    avatar, verts, faces, _ = _scene(seed=3, B=8)
    R, _, _ = triangle_frames(verts.double(), faces)
    m = R
    t = torch.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    assert set(t.argmax(-1).unique().tolist()) == {0, 1, 2, 3}
    avatar = avatar.double()
    v = verts.double()
    means, quats, scales = bind_gaussians(v, faces, avatar.binding, avatar.means_local,
                                          torch.exp(avatar.log_scales),
                                          torch.nn.functional.normalize(avatar.quats_local, dim=-1))
    assert means.dtype == torch.float64
    with torch.enable_grad():
        ref = avatar(v, faces)
    torch.testing.assert_close(means, ref["means"].detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(quats, ref["quats"].detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(scales, ref["scales"].detach(), rtol=1e-10, atol=1e-12)
    # and the per-triangle quaternion is the torch closed form's
    q_tri = rotmat_to_quat(R)
    assert torch.allclose(q_tri.norm(dim=-1), torch.ones(()).double())
    assert math.isfinite(float(means.abs().max()))
