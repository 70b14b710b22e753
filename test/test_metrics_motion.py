"""DualTalk motion metrics: FD, P-FD, MSE, SID, rPCC, STS, aggregation and Table 1 scaling."""

import math

import numpy as np
import pytest
import torch

from rsatalker_core.errors import RsatalkerError
from rsatalker_core.metrics.motion import (
    FD_EPS,
    MetricError,
    aggregate,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    motion_metrics,
    mse,
    paired_frechet_distance,
    pearson,
    rpcc,
    scale_for_table,
    shannon_index_diversity,
    sts,
)
from rsatalker_core.io.motion_npz import load_motion_npz

GROUP_COLS = {"EXP": slice(0, 50), "JAW": slice(50, 53), "POSE": slice(53, 56)}


def _trace_sqrt_product(s1, s2):
    """tr((s1 s2)^½) computed independently of sqrtm: s1^½ s2 s1^½ is symmetric PSD."""
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum())


# ----------------------------------------------------------------------------- FD


def test_fd_of_identical_distributions_is_zero():
    rng = np.random.default_rng(0)
    for d in (3, 50):
        x = rng.normal(size=(300, d))
        assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
        # same frames in another order: identical Gaussian statistics
        assert frechet_distance(x, x[rng.permutation(300)]) == pytest.approx(0.0, abs=1e-8)


def test_fd_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 0.0])
    sd1, sd2 = np.array([1.0, 2.0, 0.5]), np.array([2.0, 2.0, 1.5])
    # FD of diagonal Gaussians: |mu1 - mu2|² + Σ (sd1 - sd2)²
    closed = float(((mu1 - mu2) ** 2).sum() + ((sd1 - sd2) ** 2).sum())
    assert closed == pytest.approx(0.25 + 4.0 + 1.0 + 1.0)
    # exact statistics
    got = frechet_distance_from_stats(mu1, np.diag(sd1**2), mu2, np.diag(sd2**2))
    assert got == pytest.approx(closed, rel=1e-12)
    # large samples
    rng = np.random.default_rng(1)
    x = mu1 + sd1 * rng.normal(size=(200_000, 3))
    y = mu2 + sd2 * rng.normal(size=(200_000, 3))
    assert frechet_distance(x, y) == pytest.approx(closed, rel=0.01)


def test_fd_matches_eigen_formula_for_full_covariances():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_gaussian_stats_use_unbiased_covariance():
    x = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu, [2.0, 2.0])
    np.testing.assert_allclose(sigma, np.cov(x.T, ddof=1))
    assert sigma[0, 0] == pytest.approx(4.0)  # Σ(x - 2)² / (3 - 1) = 8 / 2


def test_fd_is_finite_for_singular_covariances():
    rng = np.random.default_rng(3)
    # a constant feature (jaw that never moves) in both clips
    x = rng.normal(size=(100, 3))
    y = rng.normal(size=(100, 3)) + 0.3
    x[:, 1] = 0.0
    y[:, 1] = 0.0
    fd = frechet_distance(x, y)
    assert math.isfinite(fd) and fd >= 0.0
    # fewer frames than features: rank-deficient covariances (T=10 < D=50)
    a, b = rng.normal(size=(10, 50)), rng.normal(size=(10, 50))
    fd = frechet_distance(a, b)
    assert math.isfinite(fd) and fd > 0.0
    # both clips completely still, at different places: only the mean term remains
    c, d = np.zeros((20, 3)), np.full((20, 3), 0.1)
    assert frechet_distance(c, d) == pytest.approx(0.03, abs=1e-5)
    assert frechet_distance(c, c) == pytest.approx(0.0, abs=1e-5)


def test_fd_non_finite_sqrtm_falls_back_to_eps_identity():
    # an exactly zero product has the square root 0: no fallback needed
    s1 = np.array([[1.0, 0.0], [0.0, 0.0]])
    s2 = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert frechet_distance_from_stats(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(2.0)
    # a nilpotent product has no square root: scipy's sqrtm returns inf, and the eps*I
    # rule gives tr(s1) + tr(s2) - 2 (sqrt(eps (1 + eps)) + eps)
    s2 = np.array([[0.0, 1.0], [0.0, 0.0]])
    fd = frechet_distance_from_stats(np.zeros(2), s1, np.zeros(2), s2)
    assert math.isfinite(fd)
    assert fd == pytest.approx(1.0 - 2 * (math.sqrt(FD_EPS * (1 + FD_EPS)) + FD_EPS), rel=1e-9)


def test_fd_on_rank_deficient_clips_matches_eigen_formula():
    rng = np.random.default_rng(8)
    for t in range(20):
        a, b = rng.normal(size=(6, 20)), rng.normal(size=(6, 20))  # T < D
        a[:, :5] = 0.0  # and constant features
        b[:, :5] = 0.0
        (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
        expected = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product(s1, s2)
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fd_needs_two_frames():
    with pytest.raises(MetricError, match="at least 2 frames"):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    # MetricError is both an rsatalker error and a ValueError
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((1, 3)))
    with pytest.raises(RsatalkerError):
        frechet_distance(np.zeros((5, 3)), np.full((5, 3), np.nan))


# ----------------------------------------------------------------------------- P-FD


def test_pfd_is_fd_of_concatenated_features():
    rng = np.random.default_rng(4)
    partner, gt, pred = (rng.normal(size=(80, 3)) for _ in range(3))
    expected = frechet_distance(np.hstack([partner, gt]), np.hstack([partner, pred]))
    assert paired_frechet_distance(pred, gt, partner) == pytest.approx(expected, rel=1e-12)
    assert paired_frechet_distance(gt, gt, partner) == pytest.approx(0.0, abs=1e-8)


def test_pfd_sees_lost_coupling_that_fd_misses():
    rng = np.random.default_rng(5)
    partner = rng.normal(size=(400, 3))
    gt = 0.9 * partner + 0.1 * rng.normal(size=(400, 3))  # listener mirrors the partner
    shuffled = gt[rng.permutation(400)]  # same frames, coupling destroyed
    assert frechet_distance(shuffled, gt) == pytest.approx(0.0, abs=1e-8)
    assert paired_frechet_distance(shuffled, gt, partner) > 1.0


# ----------------------------------------------------------------------------- MSE / SID / rPCC / STS


def test_mse_exact():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    gt = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert mse(pred, gt) == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_sid_hand_computed():
    # two tight, far-apart clusters in the fitted sequence
    fit = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]])
    one_cluster = np.array([[0.05, 0.0]] * 6)
    half_half = np.array([[0.0, 0.0]] * 3 + [[10.0, 10.0]] * 3)
    # -Σ p log2(p + 1e-6), DualTalk's formula
    assert shannon_index_diversity(fit, one_cluster, k=2) == pytest.approx(-math.log2(1 + 1e-6))
    assert shannon_index_diversity(fit, half_half, k=2) == pytest.approx(-math.log2(0.5 + 1e-6))
    # four distinct points, k=4, uniform histogram: 2 bits
    four = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert shannon_index_diversity(four, four, k=4) == pytest.approx(2.0, abs=1e-5)
    # k above the number of distinct frames is lowered to it (here 4 -> 2 clusters)
    assert shannon_index_diversity(fit[[0, 2]], half_half, k=4) == pytest.approx(1.0, abs=1e-5)
    # a collapsed (constant) sequence puts everything in one cluster
    assert shannon_index_diversity(np.zeros((10, 3)), half_half[:, :1].repeat(3, 1), k=5) == pytest.approx(
        0.0, abs=1e-5
    )


def test_sid_is_deterministic_for_a_seed():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    assert shannon_index_diversity(x, y, 10, seed=3) == shannon_index_diversity(x, y, 10, seed=3)
    assert 2.5 < shannon_index_diversity(x, y, 10) <= math.log2(10)


def test_rpcc_hand_computed():
    partner = np.array([[1.0], [2.0], [3.0], [4.0]])
    gt = 2.0 * partner + 1.0  # PCC(gt, partner) = 1
    assert rpcc(gt, gt, partner) == pytest.approx(0.0)
    assert rpcc(-partner, gt, partner) == pytest.approx(2.0)  # PCC(pred, partner) = -1
    assert rpcc(np.zeros((4, 1)), gt, partner) == pytest.approx(1.0)  # constant: PCC := 0
    # flattened over [T, D] row-major, as DualTalk's reshape(-1)
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_sts_hand_computed():
    pred = np.array([[0.0], [1.0], [3.0]])
    gt = np.zeros((3, 1))
    # velocities differ by 1 and 2: sqrt((1 + 4) / 0.1)
    assert sts(pred, gt) == pytest.approx(math.sqrt(50.0))
    assert sts(pred, gt, timestep=1.0) == pytest.approx(math.sqrt(5.0))
    # an offset does not change the velocities
    assert sts(gt + 5.0, gt) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- per clip


def test_motion_metrics_groups_keys_and_truncation():
    rng = np.random.default_rng(7)
    gt = rng.normal(size=(60, 56))
    partner = rng.normal(size=(70, 56))
    pred = gt.copy()
    pred[:, GROUP_COLS["JAW"]] += 0.1  # disturb the jaw only
    pred = np.vstack([pred, rng.normal(size=(15, 56))])  # longer than gt: truncated to 60
    m = motion_metrics(pred, gt, partner)
    assert set(m) == {f"{k}-{g}" for k in ("FD", "P-FD", "MSE", "SID", "rPCC", "STS") for g in GROUP_COLS}
    assert m["MSE-JAW"] == pytest.approx(0.01)
    assert m["MSE-EXP"] == 0.0 and m["MSE-POSE"] == 0.0
    assert m["FD-JAW"] == pytest.approx(0.03, rel=1e-6)  # a pure mean shift of 0.1 in 3 dims
    assert m["FD-EXP"] == pytest.approx(0.0, abs=1e-8)
    assert m["STS-JAW"] == pytest.approx(0.0, abs=1e-12)
    assert all(math.isfinite(v) for v in m.values())
    # without a partner, P-FD and rPCC are left out; torch tensors are accepted
    m2 = motion_metrics(torch.from_numpy(pred), torch.from_numpy(gt))
    assert set(m2) == {k for k in m if not k.startswith(("P-FD", "rPCC"))}
    assert m2["MSE-JAW"] == pytest.approx(m["MSE-JAW"])


def test_motion_metrics_rejects_bad_input():
    with pytest.raises(MetricError, match=r"\[T, 56\]"):
        motion_metrics(np.zeros((10, 55)), np.zeros((10, 56)))
    with pytest.raises(MetricError, match="at least 2 common frames"):
        motion_metrics(np.zeros((10, 56)), np.zeros((1, 56)))
    with pytest.raises(MetricError, match="partner_gt"):
        motion_metrics(np.zeros((10, 56)), np.zeros((10, 56)), np.zeros((10, 3)))


def test_aggregate_and_table_scaling():
    clips = [
        {"FD-JAW": 0.001, "MSE-EXP": 0.2, "FD-EXP": 10.0},
        {"FD-JAW": 0.003, "MSE-EXP": 0.4, "FD-EXP": 12.0},
    ]
    mean = aggregate(clips)
    assert mean == pytest.approx({"FD-JAW": 0.002, "MSE-EXP": 0.3, "FD-EXP": 11.0})
    table = scale_for_table({**mean, "FD-POSE": 0.05, "SID-EXP": 3.0})
    assert table == pytest.approx(
        {
            "FD-JAW (×10³)": 2.0,
            "MSE-EXP (×10¹)": 3.0,
            "FD-EXP": 11.0,
            "FD-POSE (×10²)": 5.0,
            "SID-EXP": 3.0,
        }
    )
    assert list(table)[:3] == ["FD-JAW (×10³)", "MSE-EXP (×10¹)", "FD-EXP"]
    with pytest.raises(MetricError, match="at least one clip"):
        aggregate([])
    with pytest.raises(MetricError, match="clip 1"):
        aggregate([{"a": 1.0}, {"b": 1.0}])


def test_on_real_dualtalk_clip(dualtalk_sample):
    gt = load_motion_npz(str(dualtalk_sample["speaker2_npz"]))  # [587, 56]
    assert gt.shape[1] == 56 and len(gt) > 100
    same = motion_metrics(gt, gt)
    for g in GROUP_COLS:
        assert same[f"FD-{g}"] == pytest.approx(0.0, abs=1e-6)
        assert same[f"MSE-{g}"] == 0.0 and same[f"STS-{g}"] == 0.0
    # a prediction 10 frames late: the same poses, out of step with the ground truth
    late = np.vstack([np.repeat(gt[:1], 10, axis=0), gt[:-10]])
    m = motion_metrics(late, gt)
    for g in GROUP_COLS:
        assert m[f"MSE-{g}"] > 0.0 and m[f"STS-{g}"] > 0.0
        # the per-frame distribution barely changes, so FD stays far below MSE-based error
        assert 0.0 <= m[f"FD-{g}"] < 0.1 * m[f"MSE-{g}"] * (gt.shape[1] if g == "EXP" else 3)
        assert 0.0 < m[f"SID-{g}"] <= math.log2({"EXP": 40, "JAW": 10, "POSE": 10}[g]) + 1e-6
    # a still face (mean pose everywhere) is far in distribution: FD well above the late copy
    still = np.repeat(gt.mean(axis=0, keepdims=True), len(gt), axis=0)
    ms = motion_metrics(still, gt)
    assert all(math.isfinite(v) for v in ms.values())
    for g in GROUP_COLS:
        assert ms[f"FD-{g}"] > 2.0 * m[f"FD-{g}"]
