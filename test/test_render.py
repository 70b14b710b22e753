"""The CPU rasterizer against an independent brute-force renderer, its gradients, the backend
switch and the camera helpers."""

import math

import pytest
import torch

from rsatalker_core.config import RenderConfig
from rsatalker_core.errors import ConfigError
from rsatalker_core.render import RenderError, rasterize, resolve_backend
from rsatalker_core.render.camera import HEAD_CENTRE, default_camera, intrinsics_from_fov, look_at
from rsatalker_core.render.torch_backend import rasterize_torch


# --------------------------------------------------------------------------------------
# Independent reference: per pixel, every Gaussian, depth-sorted, gsplat classic rules.
# Written from the EWA-splatting equations, not from gsplat's code.
# --------------------------------------------------------------------------------------
def _quat_to_R(q):
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def brute_force(means, quats, scales, opac, colors, viewmat, K, W, H, bg, near=0.01, far=1e10, eps2d=0.3):
    """Returns (rgb [H, W, 3], alpha [H, W, 1]) for one camera, in float64."""
    f64 = torch.float64
    means, quats, scales, opac, colors, viewmat, K, bg = (
        t.to(f64) for t in (means, quats, scales, opac, colors, viewmat, K, bg)
    )
    R = _quat_to_R(quats)
    cov = R @ torch.diag_embed(scales**2) @ R.transpose(-1, -2)
    Rv, tv = viewmat[:3, :3], viewmat[:3, 3]
    pc = means @ Rv.T + tv
    cov_c = Rv @ cov @ Rv.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x, y, z = pc.unbind(-1)
    # gsplat's pinhole Jacobian evaluates at the centre clamped to 1.3x the field of view.
    tanx, tany = 0.5 * W / fx, 0.5 * H / fy
    xc = z * torch.clamp(x / z, -(cx / fx + 0.3 * tanx), (W - cx) / fx + 0.3 * tanx)
    yc = z * torch.clamp(y / z, -(cy / fy + 0.3 * tany), (H - cy) / fy + 0.3 * tany)
    J = torch.zeros(len(means), 2, 3, dtype=f64)
    J[:, 0, 0], J[:, 0, 2] = fx / z, -fx * xc / z**2
    J[:, 1, 1], J[:, 1, 2] = fy / z, -fy * yc / z**2
    cov2 = J @ cov_c @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=f64)
    conic = torch.linalg.inv(cov2)
    mu = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    ok = (z > near) & (z < far) & (opac >= 1 / 255)
    idx = torch.nonzero(ok).squeeze(1)
    idx = idx[torch.argsort(z[idx], stable=True)]
    jj, ii = torch.meshgrid(torch.arange(W, dtype=f64), torch.arange(H, dtype=f64), indexing="xy")
    p = torch.stack([jj + 0.5, ii + 0.5], -1).reshape(-1, 2)  # [P, 2]
    T = torch.ones(len(p), dtype=f64)
    done = torch.zeros(len(p), dtype=torch.bool)
    out = torch.zeros(len(p), 3, dtype=f64)
    for g in idx.tolist():
        d = mu[g] - p
        A = conic[g]
        sigma = 0.5 * (A[0, 0] * d[:, 0] ** 2 + A[1, 1] * d[:, 1] ** 2) + A[0, 1] * d[:, 0] * d[:, 1]
        a = torch.clamp(opac[g] * torch.exp(-sigma), max=0.999)
        use = (sigma >= 0) & (a >= 1 / 255) & ~done
        nT = T * (1 - a)
        stop = use & (nT <= 1e-4)
        done |= stop
        use &= ~stop
        out += torch.where(use, a * T, 0.0)[:, None] * colors[g]
        T = torch.where(use, nT, T)
    rgb = out + T[:, None] * bg
    return rgb.reshape(H, W, 3), (1 - T).reshape(H, W, 1)


def random_scene(n, seed, dtype=torch.float32):
    """Gaussians in front of, beside and behind a camera at the origin looking down +z."""
    g = torch.Generator().manual_seed(seed)
    means = torch.empty(n, 3)
    means[:, :2] = (torch.rand(n, 2, generator=g) - 0.5) * 2.6  # some well off-screen
    means[:, 2] = torch.rand(n, generator=g) * 4.0 - 0.5  # some behind / at the near plane
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6 - 3.0)
    opac = torch.rand(n, generator=g)
    opac[: n // 10] = 0.9999  # saturating alpha, early termination
    colors = torch.rand(n, 3, generator=g)
    return [t.to(dtype) for t in (means, quats, scales, opac, colors)]


def camera(W, H, dtype=torch.float32):
    view = torch.eye(4, dtype=dtype)[None]
    K = torch.tensor([[0.9 * W, 0, 0.52 * W], [0, 0.85 * W, 0.47 * H], [0, 0, 1]], dtype=dtype)[None]
    return view, K


@pytest.mark.parametrize(
    "W,H,n,seed", [(32, 24, 300, 0), (64, 48, 400, 1), (37, 29, 250, 2), (24, 40, 300, 3)]
)
def test_matches_brute_force(W, H, n, seed):
    means, quats, scales, opac, colors = random_scene(n, seed)
    view, K = camera(W, H)
    bg = torch.tensor([[0.2, 0.5, 0.9]])
    rgb, alpha = rasterize(means, quats, scales, opac, colors, view, K, W, H, bg, backend="torch")
    ref_rgb, ref_a = brute_force(means, quats, scales, opac, colors, view[0], K[0], W, H, bg[0])
    assert rgb.shape == (1, H, W, 3) and alpha.shape == (1, H, W, 1)
    assert alpha.max() > 0.5 and alpha.min() < 0.5, "scene should be partly covered"
    assert torch.allclose(rgb[0].double(), ref_rgb, atol=1e-5, rtol=0)
    assert torch.allclose(alpha[0].double(), ref_a, atol=1e-5, rtol=0)


def test_float64_matches_brute_force_tightly_and_chunking_is_invisible():
    W, H = 40, 32
    means, quats, scales, opac, colors = random_scene(300, 7, torch.float64)
    view, K = camera(W, H, torch.float64)
    bg = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    ref_rgb, ref_a = brute_force(means, quats, scales, opac, colors, view[0], K[0], W, H, bg[0])
    for chunk in (1 << 20, 37):  # one chunk; many small chunks (with a tile split across none)
        rgb, alpha = rasterize_torch(
            means, quats, scales, opac, colors, view, K, W, H, bg, max_isects_per_chunk=chunk
        )
        assert (rgb[0] - ref_rgb).abs().max() < 1e-10
        assert (alpha[0] - ref_a).abs().max() < 1e-10


def test_multiple_cameras_and_tile_size_do_not_change_pixels():
    W, H = 32, 24
    means, quats, scales, opac, colors = random_scene(200, 4)
    view, K = camera(W, H)
    view2 = view.clone()
    view2[0, :3, 3] = torch.tensor([0.1, -0.05, 0.2])
    views, Ks = torch.cat([view, view2]), torch.cat([K, K])
    rgb, _ = rasterize(means, quats, scales, opac, colors, views, Ks, W, H, backend="torch")
    for c in range(2):
        ref, _ = brute_force(means, quats, scales, opac, colors, views[c], Ks[c], W, H, torch.zeros(3))
        assert torch.allclose(rgb[c].double(), ref, atol=1e-5)
    rgb16, _ = rasterize_torch(means, quats, scales, opac, colors, views, Ks, W, H, tile_size=16)
    assert torch.allclose(rgb, rgb16, atol=1e-6)


def test_empty_and_fully_culled_scenes_give_background():
    W, H = 16, 8
    view, K = camera(W, H)
    bg = torch.tensor([[0.3, 0.6, 0.1]])
    means = torch.tensor([[0.0, 0.0, -1.0], [50.0, 0.0, 1.0]])  # behind; far off-screen
    q, s = torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), 0.01)
    rgb, alpha = rasterize(means, q, s, torch.ones(2), torch.ones(2, 3), view, K, W, H, bg, backend="torch")
    assert torch.equal(alpha, torch.zeros_like(alpha))
    assert torch.allclose(rgb, bg.reshape(1, 1, 1, 3).expand(1, H, W, 3))


def test_gradients_flow_to_all_gaussian_parameters():
    W, H = 32, 24
    means, quats, scales, opac, colors = random_scene(150, 5)
    view, K = camera(W, H)
    params = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, colors)]
    rgb, alpha = rasterize(*params, view, K, W, H, backend="torch")
    (rgb.square().sum() + alpha.sum()).backward()
    visible_means = params[0].grad.abs().sum(-1) > 0
    for name, p in zip(("means", "quats", "scales", "opacities", "colors"), params):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # Gaussians behind the camera get exactly zero gradient.
    behind = means[:, 2] <= 0.01
    assert behind.any() and not visible_means[behind].any()


def test_finite_difference_gradient_on_tiny_scene():
    W, H = 12, 10
    g = torch.Generator().manual_seed(11)
    n = 4
    means = torch.cat([(torch.rand(n, 2, generator=g) - 0.5) * 0.6, 1.5 + torch.rand(n, 1, generator=g)], 1)
    quats = torch.randn(n, 4, generator=g)
    scales = 0.05 + 0.1 * torch.rand(n, 3, generator=g)
    opac = 0.3 + 0.5 * torch.rand(n, generator=g)
    colors = torch.rand(n, 3, generator=g)
    view, K = camera(W, H, torch.float64)
    weights = torch.rand(H, W, 3, generator=g, dtype=torch.float64)
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)

    def loss(m, s, o, c):
        rgb, a = rasterize_torch(m, quats.double(), s, o, c, view, K, W, H, bg)
        return (rgb[0] * weights).sum() + a.sum()

    inputs = tuple(t.double().requires_grad_(True) for t in (means, scales, opac, colors))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_checkpointed_chunks_give_identical_gradients():
    W, H = 32, 24
    means, quats, scales, opac, colors = random_scene(200, 6)
    view, K = camera(W, H)
    grads = []
    for ckpt in (False, True):
        m = means.clone().requires_grad_(True)
        c = colors.clone().requires_grad_(True)
        rgb, _ = rasterize_torch(m, quats, scales, opac, c, view, K, W, H, max_isects_per_chunk=50,
                                 checkpoint_chunks=ckpt)
        rgb.sum().backward()
        grads.append((m.grad, c.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


# --------------------------------------------------------------------------------------
# Backend selection and input checks
# --------------------------------------------------------------------------------------
def _tiny():
    view, K = camera(8, 8)
    return (torch.zeros(1, 3) + torch.tensor([0, 0, 1.0]), torch.tensor([[1.0, 0, 0, 0]]),
            torch.full((1, 3), 0.1), torch.ones(1), torch.ones(1, 3), view, K, 8, 8)


def test_gsplat_backend_on_cpu_tensors_raises_clearly():
    with pytest.raises(RenderError, match="gsplat.*CUDA"):
        rasterize(*_tiny(), backend="gsplat")
    assert isinstance(RenderError("x"), ValueError)


def test_auto_backend_on_cpu_uses_torch_and_unknown_backend_raises():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    rgb, alpha = rasterize(*_tiny(), backend="auto")
    assert alpha.max() > 0.5
    with pytest.raises(RenderError, match="render.backend"):
        rasterize(*_tiny(), backend="vulkan")


def test_bad_shapes_raise_render_error_naming_the_argument():
    args = list(_tiny())
    args[2] = torch.ones(2, 3)
    with pytest.raises(RenderError, match="scales"):
        rasterize(*args)
    args = list(_tiny())
    args[5] = torch.eye(4)
    with pytest.raises(RenderError, match="viewmats"):
        rasterize(*args)
    args = list(_tiny())
    args[4] = args[4].double()
    with pytest.raises(RenderError, match="colors"):
        rasterize(*args)


# --------------------------------------------------------------------------------------
# Frames of a clip: rasterize_frames (batched gsplat calls on CUDA, per frame on CPU)
# --------------------------------------------------------------------------------------
def _frames(B=5, n=300, W=40, H=32, seed=4):
    """B frames of one Gaussian set moving sideways, per-frame cameras (shifted principal point)."""
    means, quats, scales, opac, colors = random_scene(n, seed)
    shift = torch.linspace(-0.05, 0.05, B)[:, None, None] * torch.tensor([1.0, 0.0, 0.0])
    view, K = camera(W, H)
    Ks = K.repeat(B, 1, 1)
    Ks[:, 0, 2] += torch.arange(B) * 1.5
    return (means[None] + shift, quats.expand(B, n, 4), scales.expand(B, n, 3), opac, colors,
            view.expand(B, 4, 4), Ks, W, H)


def _gsplat_stand_in(calls):
    """Stands in for gsplat's batched CUDA call on CPU: records each call's frame count and
    renders its frames with the torch backend (the chunking around it is under test)."""
    from rsatalker_core.render.gsplat_backend import check_gsplat_inputs

    def frames(means, quats, scales, opac, colors, viewmats, Ks, W, H, bg=None):
        check_gsplat_inputs(means=means, quats=quats, scales=scales, opacities=opac, colors=colors,
                            viewmats=viewmats, Ks=Ks, backgrounds=bg)
        assert means.shape[:1] == quats.shape[:1] == opac.shape[:1] == colors.shape[:1] == viewmats.shape[:1]
        calls.append(means.shape[0])
        out = [rasterize_torch(means[b], quats[b], scales[b], opac[b], colors[b], viewmats[b : b + 1],
                               Ks[b : b + 1], W, H, None if bg is None else bg[b : b + 1]) for b in range(len(means))]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])

    return frames


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_rasterize_frames_on_cpu_is_rasterize_per_frame(backend):
    from rsatalker_core.render import numba_available, rasterize_frames

    if backend == "numba" and not numba_available():
        pytest.skip("numba does not import here")
    means, quats, scales, opac, colors, views, Ks, W, H = _frames()
    bg = torch.tensor([[0.3, 0.6, 0.9]])
    with torch.no_grad():
        rgb, alpha = rasterize_frames(means, quats, scales, opac, colors, views, Ks, W, H, bg, backend=backend)
        assert rgb.shape == (5, H, W, 3) and alpha.shape == (5, H, W, 1)
        for i in range(5):
            ref_rgb, ref_alpha = rasterize(means[i], quats[i], scales[i], opac, colors, views[i : i + 1],
                                           Ks[i : i + 1], W, H, bg, backend=backend)
            assert torch.equal(rgb[i], ref_rgb[0]) and torch.equal(alpha[i], ref_alpha[0]), i
        # one camera for all frames = that camera repeated
        one, _ = rasterize_frames(means, quats, scales, opac, colors, views[:1], Ks[:1], W, H, bg, backend=backend)
        rep, _ = rasterize_frames(means, quats, scales, opac, colors, views[:1].expand(5, 4, 4),
                                  Ks[:1].expand(5, 3, 3), W, H, bg.expand(5, 3), backend=backend)
        assert torch.equal(one, rep)
        assert (rgb[0] - rgb[4]).abs().max() > 0.1  # the frames differ


def test_rasterize_frames_gsplat_path_batches_in_chunks(monkeypatch):
    import rsatalker_core.render as render

    from rsatalker_core.render import rasterize_frames

    means, quats, scales, opac, colors, views, Ks, W, H = _frames(B=7)
    bg = torch.tensor([[0.3, 0.6, 0.9]])
    with torch.no_grad():
        ref = torch.stack([rasterize_torch(means[i], quats[i], scales[i], opac, colors, views[i : i + 1],
                                           Ks[i : i + 1], W, H, bg)[0][0] for i in range(7)])
    calls = []
    monkeypatch.setattr(render, "resolve_backend", lambda backend, device, needs_grad=True: "gsplat")
    monkeypatch.setattr(render, "rasterize_gsplat_frames", _gsplat_stand_in(calls))
    with torch.no_grad():
        rgb, alpha = rasterize_frames(means, quats, scales, opac, colors, views, Ks, W, H, bg, batch_frames=3)
    assert calls == [3, 3, 1]  # 7 frames in 3 calls, not 7
    assert torch.equal(rgb, ref) and alpha.shape == (7, H, W, 1)
    calls.clear()
    with torch.no_grad():
        rasterize_frames(means, quats, scales, opac, colors, views, Ks, W, H, bg)
    assert calls == [7]  # the default chunk holds a short clip in one call
    with pytest.raises(RenderError, match="batch_frames"):
        rasterize_frames(means, quats, scales, opac, colors, views, Ks, W, H, bg, batch_frames=0)


def test_rasterize_frames_bad_shapes_name_the_argument():
    from rsatalker_core.render import rasterize_frames

    means, quats, scales, opac, colors, views, Ks, W, H = _frames(B=3)
    with pytest.raises(RenderError, match="means"):
        rasterize_frames(means[0], quats, scales, opac, colors, views, Ks, W, H)
    with pytest.raises(RenderError, match="quats"):
        rasterize_frames(means, quats[:2], scales, opac, colors, views, Ks, W, H)
    with pytest.raises(RenderError, match="opacities"):
        rasterize_frames(means, quats, scales, opac.expand(2, -1), colors, views, Ks, W, H)
    with pytest.raises(RenderError, match="Ks"):
        rasterize_frames(means, quats, scales, opac, colors, views, Ks[:2], W, H)
    with pytest.raises(RenderError, match="colors"):
        rasterize_frames(means, quats, scales, opac, colors.double(), views, Ks, W, H)


def test_gsplat_inputs_must_be_float32_named_with_dtype():
    """Runs before any CUDA call, so the gsplat backend's refusal is testable on CPU."""
    from rsatalker_core.render.gsplat_backend import check_gsplat_inputs, rasterize_gsplat_frames

    args = dict(zip(("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks"), _tiny()[:7]))
    check_gsplat_inputs(**args, backgrounds=None)  # float32: accepted
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        bad = dict(args, scales=args["scales"].to(dtype))
        with pytest.raises(RenderError, match=rf"scales is {dtype}.*float32"):
            check_gsplat_inputs(**bad)
    with pytest.raises(RenderError, match=r"backgrounds is torch.float64"):
        check_gsplat_inputs(**args, backgrounds=torch.ones(1, 3, dtype=torch.float64))
    # the batched entry point refuses float64 Gaussians before reaching gsplat / CUDA
    m, q, s, o, c, v, K, W, H = _frames(B=2)
    with pytest.raises(RenderError, match="means is torch.float64"):
        rasterize_gsplat_frames(m.double(), q.double(), s.double(), o.double()[None].expand(2, -1),
                                c.double()[None].expand(2, -1, -1), v.double(), K.double(), W, H)


def test_avatar_renderer_gsplat_path_batches_frames_with_per_frame_offsets(monkeypatch):
    """On the gsplat path a clip is posed and rasterized in chunks of batch_frames frames,
    each frame with its own relationship and time offsets; the pixels are those of the CPU
    path (one frame at a time) up to batched-FLAME rounding (at most 1 uint8 level)."""
    import numpy as np

    import rsatalker_core.render as render
    import rsatalker_core.render.renderer as renderer_mod
    from rsatalker_core.avatar.offsets import RelationshipOffsets
    from rsatalker_core.config import SocialConfig, load_config
    from rsatalker_core.render.renderer import AvatarRenderer

    from conftest import SMALL_CONFIG

    cfg = load_config(str(SMALL_CONFIG), {"render.width": 32, "render.height": 32, "render.backend": "torch"})
    r = AvatarRenderer(cfg, batch_frames=3)
    torch.manual_seed(0)
    offsets = RelationshipOffsets(SocialConfig(embed_dim=16, hidden_dim=32, time_dim=16, max_offset=0.01),
                                  r.avatar.num_triangles)
    with torch.no_grad():
        torch.nn.init.normal_(offsets.offsetnet[-1].weight, std=1.0)
        torch.nn.init.normal_(offsets.offsetnet[-1].bias, std=1.0)
    r.avatar.attach_offsets(offsets)
    motion = np.zeros((5, 56), np.float32)
    motion[:, 50] = np.linspace(0.0, 0.25, 5)
    rels = ["couple", "siblings", "couple", "parent_child", None]
    assert r.frames_per_call() == 1
    per_frame = r.render(motion, rels, frame_index=[3, 4, 5, 40, 6])
    calls = []
    monkeypatch.setattr(render, "resolve_backend", lambda backend, device, needs_grad=True: "gsplat")
    monkeypatch.setattr(renderer_mod, "resolve_backend", lambda backend, device, needs_grad=True: "gsplat")
    monkeypatch.setattr(render, "rasterize_gsplat_frames", _gsplat_stand_in(calls))
    assert r.frames_per_call() == 3
    batched = r.render(motion, rels, frame_index=[3, 4, 5, 40, 6])
    assert calls == [3, 2]
    assert batched.shape == per_frame.shape == (5, 32, 32, 3)
    assert np.abs(batched.astype(int) - per_frame.astype(int)).max() <= 1
    # a frame's own relationship matters: the siblings frame is not the couple one
    calls.clear()
    other = r.render(motion[1], "couple", frame_index=4)
    assert np.abs(other.astype(int) - batched[1].astype(int)).max() > 1
    calls.clear()
    assert len(list(r.render_iter(motion, "couple"))) == 5 and calls == [3, 2]  # chunks of batch_frames
    with pytest.raises(RenderError, match="batch_frames"):
        AvatarRenderer(cfg, batch_frames=0)


# --------------------------------------------------------------------------------------
# Camera helpers
# --------------------------------------------------------------------------------------
def test_intrinsics_from_fov():
    K = intrinsics_from_fov(90.0, 200, 100)
    assert torch.allclose(K, torch.tensor([[50.0, 0, 100], [0, 50, 50], [0, 0, 1]]))
    with pytest.raises(ConfigError, match="fov"):
        intrinsics_from_fov(180.0, 10, 10)


def test_look_at_is_opencv_and_projects_known_points():
    view = look_at(torch.tensor([0.0, 0.0, 2.0]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    R = view[:3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6) and torch.det(R) > 0
    K = intrinsics_from_fov(60.0, 64, 48)
    f = 24.0 / math.tan(math.radians(30.0))

    def project(p):
        pc = view[:3, :3] @ p + view[:3, 3]
        uv = K @ pc
        return uv[:2] / uv[2], pc[2]

    uv, depth = project(torch.zeros(3))
    assert torch.allclose(uv, torch.tensor([32.0, 24.0])) and abs(depth - 2.0) < 1e-6
    uv, _ = project(torch.tensor([0.1, 0.2, 0.0]))  # world +x → image right, world +y → image up
    assert torch.allclose(uv, torch.tensor([32 + f * 0.05, 24 - f * 0.1]), atol=1e-4)
    with pytest.raises(ConfigError):
        look_at([0, 0, 1.0], [0, 0, 1.0])
    with pytest.raises(ConfigError, match="parallel"):
        look_at([0, 1.0, 0], [0, 0, 0], [0, 1.0, 0])


def test_default_camera_looks_at_head_centre_from_plus_z():
    cfg = RenderConfig(width=64, height=48, fov_deg=20.0, camera_distance=0.75)
    view, K = default_camera(cfg)
    assert view.shape == (1, 4, 4) and K.shape == (1, 3, 3)
    centre = torch.tensor(HEAD_CENTRE)
    pc = view[0, :3, :3] @ centre + view[0, :3, 3]
    assert torch.allclose(pc, torch.tensor([0.0, 0.0, 0.75]), atol=1e-6)
    uv = (K[0] @ pc)[:2] / pc[2]
    assert torch.allclose(uv, torch.tensor([32.0, 24.0]))
    # A point in front of the face (+z) is nearer the camera.
    front = view[0, :3, :3] @ (centre + torch.tensor([0, 0, 0.1])) + view[0, :3, 3]
    assert front[2] < pc[2]
    # Orbited by 90 degrees: on +x at the same distance, still looking at the centre.
    side = default_camera(cfg, yaw_deg=90.0)[0][0]
    eye = -side[:3, :3].T @ side[:3, 3]
    assert torch.allclose(eye, centre + torch.tensor([0.75, 0.0, 0.0]), atol=1e-6)
    assert torch.allclose(side[:3, :3] @ centre + side[:3, 3], torch.tensor([0.0, 0.0, 0.75]), atol=1e-6)
    with pytest.raises(ConfigError, match="camera_distance"):
        default_camera(RenderConfig(camera_distance=0.0))


def test_avatar_renderer_renders_gaze_only_in_the_eyes():
    """eye_pose turns the eyeballs (FLAME's eye joints): the vertices that move are those
    skinned to the eyes, the pixels that change lie around the eyes, and a malformed gaze is
    a ValueError."""
    import numpy as np

    from rsatalker_core.config import load_config
    from rsatalker_core.render.renderer import AvatarRenderer

    cfg = load_config(None, {"device": "cpu", "render.width": 128, "render.height": 128})
    r = AvatarRenderer(cfg)
    m = np.zeros(56, np.float32)
    eye = np.array([0.0, 0.3, 0.0, 0.0, 0.3, 0.0], np.float32)  # both eyes turned 0.3 rad in yaw
    v0 = r.flame.forward_motion(torch.zeros(1, 56))[0]
    v1 = r.flame.forward_motion(torch.zeros(1, 56), eye_pose=torch.tensor(eye))[0]
    moved = (v1 - v0).norm(dim=1) > 1e-6
    on_eyes = r.flame.lbs_weights[:, 3:].sum(1) > 0.5
    assert moved.any() and bool((moved <= on_eyes).all())
    a, b = r.render(m), r.render(m, eye_pose=eye)
    diff = np.abs(a.astype(int) - b.astype(int)).sum(2) > 8
    assert diff.sum() > 5
    ys, xs = np.nonzero(diff)
    assert ys.max() - ys.min() < 0.25 * 128  # one band across the eyes, not the whole face
    np.testing.assert_array_equal(r.render(m[None].repeat(2, 0), eye_pose=eye)[1], b)  # one gaze for all frames
    with pytest.raises(ValueError, match="eye_pose"):
        r.render(m, eye_pose=np.zeros(4))
    with pytest.raises(ValueError, match="eye_pose"):
        r.render(m, eye_pose=np.full(6, np.nan))
