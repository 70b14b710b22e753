"""The numba CPU inference rasterizer against the brute-force per-pixel reference and the
torch backend (random scenes, the default avatar posed by FLAME, edge cases), and the
automatic backend choice."""

import importlib.util
import math
import warnings

import pytest
import torch

pytest.importorskip("numba")

from rsatalker_core.render import RenderError, rasterize, resolve_backend, warmup_backend  # noqa: E402
from rsatalker_core.render import numba_backend  # noqa: E402
from rsatalker_core.render.numba_backend import rasterize_numba  # noqa: E402
from rsatalker_core.render.torch_backend import rasterize_torch  # noqa: E402
from test_render import brute_force, camera, random_scene  # noqa: E402


def _u8(rgb):
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).int()


@pytest.mark.parametrize("W,H,n,seed", [(32, 24, 300, 0), (64, 48, 400, 1), (37, 29, 250, 2), (24, 40, 300, 3)])
def test_random_scenes_match_brute_force(W, H, n, seed):
    means, quats, scales, opac, colors = random_scene(n, seed)
    view, K = camera(W, H)
    bg = torch.tensor([[0.2, 0.5, 0.9]])
    rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, bg)
    ref_rgb, ref_a = brute_force(means, quats, scales, opac, colors, view[0], K[0], W, H, bg[0])
    assert rgb.shape == (1, H, W, 3) and alpha.shape == (1, H, W, 1) and rgb.dtype == torch.float32
    assert alpha.max() > 0.5 and alpha.min() < 0.5, "scene should be partly covered"
    assert (rgb[0].double() - ref_rgb).abs().max() < 1e-5
    assert (alpha[0].double() - ref_a).abs().max() < 1e-5


def test_float64_matches_torch_backend_and_brute_force_tightly():
    W, H = 40, 32
    means, quats, scales, opac, colors = random_scene(300, 7, torch.float64)
    view, K = camera(W, H, torch.float64)
    bg = torch.tensor([[1.0, 0.4, 0.0]], dtype=torch.float64)
    rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, bg)
    assert rgb.dtype == torch.float64
    t_rgb, t_a = rasterize_torch(means, quats, scales, opac, colors, view, K, W, H, bg)
    ref_rgb, ref_a = brute_force(means, quats, scales, opac, colors, view[0], K[0], W, H, bg[0])
    assert (rgb - t_rgb).abs().max() < 1e-8 and (alpha - t_a).abs().max() < 1e-8
    assert (rgb[0] - ref_rgb).abs().max() < 1e-8 and (alpha[0] - ref_a).abs().max() < 1e-8


@pytest.mark.parametrize("seed", [11, 12])
def test_random_scenes_match_torch_backend(seed):
    W, H = 48, 40
    means, quats, scales, opac, colors = random_scene(500, seed)
    view, K = camera(W, H)
    bg = torch.rand(1, 3, generator=torch.Generator().manual_seed(seed))
    rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, bg)
    t_rgb, t_a = rasterize_torch(means, quats, scales, opac, colors, view, K, W, H, bg)
    assert (rgb - t_rgb).abs().max() < 1e-4 and (alpha - t_a).abs().max() < 1e-4
    assert (_u8(rgb) - _u8(t_rgb)).abs().max() <= 1


def test_tile_size_does_not_change_pixels():
    W, H = 45, 38
    means, quats, scales, opac, colors = random_scene(400, 13)
    view, K = camera(W, H)
    ref, ref_a = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H)
    for ts in (1, 5, 8, 64):
        rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, tile_size=ts)
        assert (rgb - ref).abs().max() < 1e-6 and (alpha - ref_a).abs().max() < 1e-6


def test_parallel_tiles_give_identical_pixels():
    W, H = 45, 38
    means, quats, scales, opac, colors = random_scene(400, 13)
    view, K = camera(W, H)
    ref, ref_a = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, tile_size=8)
    rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H, tile_size=8, threads=2)
    assert torch.equal(rgb, ref) and torch.equal(alpha, ref_a)


@pytest.mark.parametrize("low", [True, False])
def test_depth_order_is_the_stable_argsort_of_the_rounded_depth(low):
    """The radix sort orders kept Gaussians as NumPy's stable argsort of the depth rounded to
    the inputs' precision: ties (many, and float64 depths equal only after float32 rounding)
    by index, negative depths and -0.0 / 0.0 included."""
    import numpy as np

    rng = np.random.default_rng(3)
    depth = rng.normal(0.5, 2.0, 5000)
    depth[::5] = 0.75  # exact ties
    depth[1::5] = 0.75 + 1e-9 * rng.random(1000)  # ties in float32 only
    depth[:4] = [-0.0, 0.0, -1e-300, 1e-300]
    keep = rng.random(5000) > 0.2
    keep[:4] = True
    ids = np.flatnonzero(keep)
    ref = ids[np.argsort(depth[ids].astype(np.float32 if low else np.float64), kind="stable")]
    got = numba_backend._depth_order(keep, depth, low)
    assert np.array_equal(got, ref)
    assert len(numba_backend._depth_order(np.zeros(3, bool), depth[:3], low)) == 0


# --------------------------------------------------------------------------------------
# The default avatar posed by FLAME (stand-in head when no FLAME file is configured).
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def avatar_gaussians():
    from rsatalker_core.avatar.gaussians import GaussianAvatar
    from rsatalker_core.config import RsatalkerConfig, resolve_asset
    from rsatalker_core.head.flame import FlameModel

    cfg = RsatalkerConfig()
    try:
        path = resolve_asset(cfg.avatar.checkpoint)
    except Exception as exc:  # the packaged asset is missing in this checkout
        pytest.skip(f"default avatar unavailable: {exc}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flame = FlameModel(cfg.flame).eval()
    avatar = GaussianAvatar.load(path).eval()
    motion = torch.zeros(1, 56)
    motion[0, :5] = torch.tensor([1.0, -0.5, 0.3, 0.0, 0.8])  # expression
    motion[0, 50] = 0.25  # jaw open, radians
    motion[0, 54] = 0.15  # head yaw, radians
    with torch.no_grad():
        g = avatar(flame.forward_motion(motion), flame.faces, None)
    return cfg, (g["means"][0], g["quats"][0], g["scales"][0], g["opacities"], g["colors"])


def test_default_avatar_matches_brute_force_and_torch(avatar_gaussians):
    from rsatalker_core.render.camera import default_camera

    cfg, gaussians = avatar_gaussians
    cfg.render.width, cfg.render.height = 40, 40
    view, K = default_camera(cfg.render)
    bg = torch.tensor([cfg.render.background])
    g64 = [t.double() for t in gaussians]
    with torch.no_grad():
        rgb64, alpha64 = rasterize_numba(*g64, view.double(), K.double(), 40, 40, bg.double())
        rgb, alpha = rasterize_numba(*gaussians, view, K, 40, 40, bg)
        t_rgb, _ = rasterize_torch(*gaussians, view, K, 40, 40, bg)
    # The reference sorts float64 depths: compare the float64 run.
    ref_rgb, ref_a = brute_force(*gaussians, view[0], K[0], 40, 40, bg[0])
    assert 0.2 < alpha.mean() < 0.95, "the head should fill part of the frame"
    assert (rgb64[0] - ref_rgb).abs().max() < 1e-6
    assert (alpha64[0] - ref_a).abs().max() < 1e-6
    # Both backends in float32: float32 rounding in the torch backend (an alpha within rounding
    # of 1/255, a depth tie) moves a few pixels by up to ~1/255; frames agree to one level.
    assert (_u8(rgb) - _u8(t_rgb)).abs().max() <= 1
    assert ((rgb - t_rgb).abs() > 1e-4).float().mean() < 0.005


def test_default_avatar_at_128_matches_torch_backend(avatar_gaussians):
    from rsatalker_core.render.camera import default_camera

    cfg, gaussians = avatar_gaussians
    cfg.render.width, cfg.render.height = 128, 128
    view, K = default_camera(cfg.render)
    bg = torch.tensor([cfg.render.background])
    # float64 on both sides: the same maths, so the same pixels to rounding.
    g64 = [t.double() for t in gaussians]
    with torch.no_grad():
        rgb, alpha = rasterize_numba(*g64, view.double(), K.double(), 128, 128, bg.double())
        t_rgb, t_a = rasterize_torch(*g64, view.double(), K.double(), 128, 128, bg.double())
        rgb32, _ = rasterize_numba(*gaussians, view, K, 128, 128, bg)
        t_rgb32, _ = rasterize_torch(*gaussians, view, K, 128, 128, bg)
    assert (rgb - t_rgb).abs().max() < 1e-4 and (alpha - t_a).abs().max() < 1e-4
    assert (_u8(rgb32) - _u8(t_rgb32)).abs().max() <= 1


# --------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------
def test_nothing_visible_gives_the_background():
    W, H = 16, 8
    view, K = camera(W, H)
    bg = torch.tensor([[0.3, 0.6, 0.1]])
    means = torch.tensor([[0.0, 0.0, -1.0], [50.0, 0.0, 1.0], [0.0, 0.0, 0.005]])  # behind; off-screen; before near
    q, s = torch.tensor([[1.0, 0, 0, 0]] * 3), torch.full((3, 3), 0.01)
    rgb, alpha = rasterize_numba(means, q, s, torch.ones(3), torch.ones(3, 3), view, K, W, H, bg)
    assert torch.equal(alpha, torch.zeros_like(alpha))
    assert torch.allclose(rgb, bg.reshape(1, 1, 1, 3).expand(1, H, W, 3))
    empty = [torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3)]
    rgb, alpha = rasterize_numba(*empty, view, K, W, H, bg)
    assert torch.equal(alpha, torch.zeros_like(alpha)) and torch.allclose(rgb[0, 3, 5], bg[0])


def test_gaussians_behind_the_camera_change_nothing():
    W, H = 32, 24
    means, quats, scales, opac, colors = random_scene(200, 21)
    view, K = camera(W, H)
    front = means[:, 2] > 0.01
    rgb, alpha = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H)
    sub = [t[front] for t in (means, quats, scales, opac, colors)]
    rgb_f, alpha_f = rasterize_numba(*sub, view, K, W, H)
    assert (~front).sum() > 10
    assert torch.equal(rgb, rgb_f) and torch.equal(alpha, alpha_f)


def test_one_gaussian_covering_the_whole_image():
    W, H = 24, 20
    view, K = camera(W, H)
    means = torch.tensor([[0.0, 0.0, 1.0]])
    q, s = torch.tensor([[0.9, 0.1, 0.2, 0.3]]), torch.tensor([[3.0, 2.0, 0.5]])
    opac, col, bg = torch.tensor([0.7]), torch.tensor([[0.9, 0.2, 0.4]]), torch.tensor([[0.0, 1.0, 0.0]])
    rgb, alpha = rasterize_numba(means, q, s, opac, col, view, K, W, H, bg)
    ref_rgb, ref_a = brute_force(means, q, s, opac, col, view[0], K[0], W, H, bg[0])
    assert alpha.min() > 0.6 and (rgb[0].double() - ref_rgb).abs().max() < 1e-5
    assert (alpha[0].double() - ref_a).abs().max() < 1e-5


def test_saturating_opacity_stops_compositing():
    """Opaque layers: the first leaves T = 0.001, the second would bring it to 1e-6 <= 1e-4, so
    the pixel stops before it (gsplat's rule) and neither it nor the third shows."""
    W, H = 16, 16
    view, K = camera(W, H)
    means = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.5], [0.0, 0.0, 2.0]])
    q, s = torch.tensor([[1.0, 0, 0, 0]] * 3), torch.full((3, 3), 2.0)
    col = torch.eye(3)
    rgb, alpha = rasterize_numba(means, q, s, torch.ones(3), col, view, K, W, H)
    ref_rgb, _ = brute_force(means, q, s, torch.ones(3), col, view[0], K[0], W, H, torch.zeros(3))
    assert (rgb[0].double() - ref_rgb).abs().max() < 1e-6
    assert rgb[0, 8, 8, 1] == 0.0 and rgb[0, 8, 8, 2] == 0.0
    assert abs(rgb[0, 8, 8, 0].item() - 0.999) < 1e-6
    assert abs(alpha[0, 8, 8, 0].item() - 0.999) < 1e-6


def test_batch_of_cameras_with_their_own_backgrounds_and_channels():
    W, H = 32, 24
    means, quats, scales, opac, colors = random_scene(200, 4)
    feats = torch.cat([colors, colors[:, :2] * 0.5], -1)  # D = 5 channels
    view, K = camera(W, H)
    view2 = view.clone()
    view2[0, :3, 3] = torch.tensor([0.1, -0.05, 0.2])
    views, Ks = torch.cat([view, view2]), torch.cat([K, K])
    bgs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5], [1.0, 0.0, 1.0, 0.0, 1.0]])
    rgb, alpha = rasterize_numba(means, quats, scales, opac, feats, views, Ks, W, H, bgs)
    assert rgb.shape == (2, H, W, 5) and alpha.shape == (2, H, W, 1)
    for c in range(2):
        one, one_a = rasterize_numba(means, quats, scales, opac, feats, views[c : c + 1], Ks[c : c + 1], W, H, bgs[c : c + 1])
        assert torch.equal(rgb[c], one[0]) and torch.equal(alpha[c], one_a[0])
        ref, _ = brute_force(means, quats, scales, opac, colors, views[c], Ks[c], W, H, bgs[c, :3])
        assert (rgb[c, ..., :3].double() - ref).abs().max() < 1e-5
    assert not torch.allclose(rgb[0], rgb[1])


def test_non_finite_gaussians_are_culled_not_crashing():
    W, H = 16, 16
    means, quats, scales, opac, colors = random_scene(50, 5)
    view, K = camera(W, H)
    ref, _ = rasterize_numba(means, quats, scales, opac, colors, view, K, W, H)
    m2, s2 = torch.cat([means, torch.tensor([[float("nan"), 0, 1.0], [0, 0, 1.0]])]), torch.cat(
        [scales, torch.tensor([[0.1, 0.1, 0.1], [float("inf"), 1e30, 1.0]])]
    )
    q2, o2, c2 = torch.cat([quats, quats[:2]]), torch.cat([opac, torch.ones(2)]), torch.cat([colors, colors[:2]])
    rgb, _ = rasterize_numba(m2, q2, s2, o2, c2, view, K, W, H)
    assert torch.equal(rgb, ref)


# --------------------------------------------------------------------------------------
# Backend selection
# --------------------------------------------------------------------------------------
def _tiny():
    view, K = camera(8, 8)
    return (torch.tensor([[0, 0, 1.0]]), torch.tensor([[1.0, 0, 0, 0]]),
            torch.full((1, 3), 0.1), torch.ones(1), torch.ones(1, 3), view, K, 8, 8)


def test_auto_picks_numba_on_cpu_only_without_gradients():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, needs_grad=False) == "numba"
    assert resolve_backend("auto", cpu, needs_grad=True) == "torch"
    assert warmup_backend("auto", "cpu") == "numba"
    args = list(_tiny())
    with torch.no_grad():
        rgb_auto, _ = rasterize(*args)
    rgb_numba, _ = rasterize_numba(*args[:7], 8, 8)
    assert torch.equal(rgb_auto, rgb_numba) and not rgb_auto.requires_grad
    # With a parameter that needs gradients, auto stays on the differentiable torch path.
    args[4] = args[4].clone().requires_grad_(True)
    rgb, _ = rasterize(*args)
    rgb.sum().backward()
    assert args[4].grad is not None and args[4].grad.abs().sum() > 0
    with torch.inference_mode():
        assert not rasterize(*args)[0].requires_grad


def test_explicit_numba_backend_and_its_errors():
    args = list(_tiny())
    rgb, _ = rasterize(*args, backend="numba")
    assert rgb.max() > 0.5
    args[0] = args[0].clone().requires_grad_(True)
    with pytest.raises(RenderError, match="no gradients"):
        rasterize(*args, backend="numba")
    with pytest.raises(RenderError, match="CPU"):
        resolve_backend("numba", torch.device("cuda"), needs_grad=False)


def test_works_without_a_writable_numba_cache(monkeypatch):
    """numba raises at decoration when no cache location is usable; the module then
    compiles in memory instead of failing to import."""
    import numba

    real = numba.njit

    def njit_without_cache(*a, **kw):
        if kw.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*a, **kw)

    monkeypatch.setattr(numba, "njit", njit_without_cache)
    spec = importlib.util.spec_from_file_location("_numba_backend_nocache", numba_backend.__file__)
    mod = importlib.util.module_from_spec(spec)
    with pytest.warns(RuntimeWarning, match="compiling in memory"):
        spec.loader.exec_module(mod)
    args = _tiny()
    got = mod.rasterize_numba(*args)
    ref = rasterize_numba(*args)
    assert torch.equal(got[0], ref[0]) and math.isclose(got[1].max().item(), ref[1].max().item())


def test_avatar_renderer_warmup_loads_the_kernels_before_the_first_frame():
    """A fresh process: ``AvatarRenderer.warmup`` leaves the numba kernels of the default
    (float32) path compiled or loaded, so the live render node's first frame does not pay
    numba's JIT; before it, none is."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from rsatalker_core.config import RsatalkerConfig\n"
        "from rsatalker_core.render import numba_backend as nb\n"
        "from rsatalker_core.render.renderer import AvatarRenderer\n"
        "cfg = RsatalkerConfig(); cfg.render.width = cfg.render.height = 32\n"
        "r = AvatarRenderer(cfg)\n"
        "kernels = (nb._project, nb._depth_order, nb._bin, nb._TILES[False, np.float32])\n"
        "before = [len(k.signatures) for k in kernels]\n"
        "seconds = r.warmup()\n"
        "print(before, [len(k.signatures) for k in kernels], seconds >= 0)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0, 0] [1, 1, 1, 1] True"
