"""Motion acceptance computations (rsatalker_core.evaluation.acceptance) on small synthetic
inputs with known answers, the streaming path on a tiny model, and the script's exit on
a missing sample."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from rsatalker_core.config import EXP_SLICE, HEAD_SLICE, JAW_SLICE
from rsatalker_core.errors import MetricError
from rsatalker_core.evaluation import acceptance as acc
from rsatalker_core.head.standin import EYELID_EXPR_INDEX
from rsatalker_core.metrics.motion import frechet_distance

FPS = 25
T = 60 * FPS  # one minute


def _speaking(T=T):
    """Own voice on for 4 s, off for 3 s, repeating; energy -20 dB speaking, -90 dB silent."""
    t = np.arange(T) / FPS
    on = (t % 7.0) < 4.0
    return on, np.where(on, -20.0, -90.0)


def _clip(head_amp=0.05, speak_gain=2.0, blinks_per_min=20, jaw_sync=True, seed=0):
    """A known motion [T, 56]: head sway of std ~head_amp, faster while speaking, jaw open
    while speaking, blinks at a fixed rate on exp 12."""
    rng = np.random.default_rng(seed)
    on, energy = _speaking()
    m = np.zeros((T, 56))
    t = np.arange(T) / FPS
    # speed ratio: phase advances speak_gain times faster while speaking
    phase = np.cumsum(np.where(on, speak_gain, 1.0)) * 2 * np.pi * 0.4 / FPS
    for k in range(3):
        m[:, 53 + k] = head_amp * np.sqrt(2) * np.sin(phase + k)
    m[:, 50] = 0.15 + (0.1 * on if jaw_sync else 0.1 * rng.random(T)) + 0.01 * np.sin(2 * np.pi * 3 * t)
    period = int(round(60 * FPS / blinks_per_min)) if blinks_per_min else 0
    if period:
        for s in range(period // 2, T - 5, period):
            m[s : s + 5, EYELID_EXPR_INDEX] = [0.45, 1.0, 0.75, 0.4, 0.15]
    return m, energy


def _by_key(checks):
    return {c.key: c for c in checks}


def test_motion_checks_pass_on_a_clip_built_to_pass():
    gen, energy = _clip()
    gt, _ = _clip(head_amp=0.06, seed=1)
    mean = np.zeros(56)
    mean[50] = 0.05
    c = _by_key(acc.motion_checks(gen, gt, energy, mean, streaming=gen[:-1]))
    assert set(c) == {"head_std", "speak_listen", "lipsync_offline", "lipsync_streaming", "lipsync_ratio",
                      "fd_jaw", "fd_pose_centred", "blinks"}
    assert all(x.passed for x in c.values()), {k: x.measured for k, x in c.items() if not x.passed}
    np.testing.assert_allclose(c["head_std"].values["std_rad"], 0.05, rtol=0.05)
    assert c["speak_listen"].values["ratio"] == pytest.approx(2.0, rel=0.15)
    assert c["lipsync_offline"].values["best_r"] > 0.9
    assert c["lipsync_ratio"].values["ratio"] == pytest.approx(1.0, abs=0.02)
    assert c["blinks"].values["blinks_per_minute"] == pytest.approx(20.0, abs=1.0)


def test_motion_checks_fail_on_a_still_face():
    gt, energy = _clip(head_amp=0.06, seed=1)
    still = np.zeros_like(gt)
    still[:, 50] = 0.15 + 1e-3 * np.random.default_rng(0).standard_normal(T)  # jaw barely moves, no sync
    still[:, 53:56] = 1e-3 * np.random.default_rng(1).standard_normal((T, 3))
    c = _by_key(acc.motion_checks(still, gt, energy, np.zeros(56), streaming=still))
    assert not c["head_std"].passed and not c["lipsync_offline"].passed and not c["blinks"].passed
    assert not c["speak_listen"].passed  # same speed speaking and listening (ratio ~1)
    assert c["speak_listen"].values["ratio"] == pytest.approx(1.0, abs=0.15)
    # a tiny-noise head scores about what no motion scores (FD rewards any small spread a bit)
    v = c["fd_pose_centred"].values
    assert v["model"] == pytest.approx(v["zero"], rel=0.05) and v["zero"] == v["mean_pose"]


def test_too_much_motion_and_too_many_blinks_fail():
    gen, energy = _clip(head_amp=0.2, blinks_per_min=45)
    gt, _ = _clip(head_amp=0.06, seed=1)
    c = _by_key(acc.motion_checks(gen, gt, energy, np.zeros(56)))
    assert not c["head_std"].passed and not c["blinks"].passed
    assert c["blinks"].values["blinks_per_minute"] == pytest.approx(45.0, abs=1.5)
    # head variance 11x the real one: further from it than no motion at all
    assert not c["fd_pose_centred"].passed
    assert "lipsync_streaming" not in c


def test_streaming_ratio_fails_when_the_streamed_jaw_loses_sync():
    gen, energy = _clip()
    stream = gen.copy()
    stream[:, 50] = np.random.default_rng(3).random(T) * 0.2  # jaw unrelated to the voice
    c = _by_key(acc.motion_checks(gen, gen, energy, np.zeros(56), streaming=stream))
    assert c["lipsync_offline"].passed and not c["lipsync_streaming"].passed and not c["lipsync_ratio"].passed


def test_fd_jaw_needs_the_right_mean_and_spread():
    gt, energy = _clip(seed=1)
    mean = np.zeros(56)
    mean[50] = gt[:, 50].mean()  # the mean pose sits on the real mean: only the spread is left
    offset = gt.copy()
    offset[:, 50] += 0.2  # right dynamics, far-off resting jaw
    c = _by_key(acc.motion_checks(offset, gt, energy, mean))
    assert not c["fd_jaw"].passed
    assert c["fd_jaw"].values["model"]["offset"] == pytest.approx(0.04, rel=1e-6)
    assert c["fd_jaw"].values["model"]["centred"] == pytest.approx(0.0, abs=1e-9)
    c = _by_key(acc.motion_checks(gt, gt, energy, mean))
    assert c["fd_jaw"].passed and c["fd_jaw"].values["model"]["fd"] == pytest.approx(0.0, abs=1e-9)


def test_fd_terms_add_up_and_centring_ignores_offsets():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(500, 3)) * [0.1, 0.05, 0.02] + [0.2, 0.0, 0.1]
    pred = rng.normal(size=(500, 3)) * [0.08, 0.06, 0.02]
    t = acc.fd_terms(pred, gt)
    assert t["fd"] == pytest.approx(t["offset"] + t["centred"], rel=1e-6)
    d = pred.mean(0) - gt.mean(0)
    assert t["offset"] == pytest.approx(d @ d)
    assert acc.centred_frechet_distance(pred + 5.0, gt) == pytest.approx(t["centred"], rel=1e-9)
    # zero motion and any constant centre to the same score: tr(Sigma_gt)
    z = acc.centred_frechet_distance(np.zeros_like(gt), gt)
    assert z == pytest.approx(np.trace(np.cov(gt, rowvar=False)), rel=1e-4)
    assert acc.centred_frechet_distance(np.full_like(gt, 0.3), gt) == pytest.approx(z, rel=1e-6)
    assert frechet_distance(pred, gt) == pytest.approx(t["fd"])


def test_motion_checks_reject_bad_shapes():
    gen, energy = _clip()
    with pytest.raises(MetricError):
        acc.motion_checks(gen[:, :50], gen[:, :50], energy, np.zeros(56))
    with pytest.raises(MetricError):
        acc.motion_checks(gen, gen, energy[:-1], np.zeros(56))
    with pytest.raises(MetricError):
        acc.motion_checks(gen, gen, energy, np.zeros(55))
    with pytest.raises(MetricError):
        acc.motion_checks(gen, gen, energy, np.zeros(56), streaming=gen[:, :3])


def test_sequence_features_known_values_and_offset_invariance():
    m, _ = _clip(head_amp=0.05, blinks_per_min=20)
    f = acc.sequence_features(m)
    assert f.shape == (13,)
    names = dict(zip(acc.FEATURE_NAMES, f))
    np.testing.assert_allclose([names["head_std_x"], names["head_std_y"], names["head_std_z"]], 0.05, rtol=0.05)
    assert names["blinks_per_min"] == pytest.approx(20.0, abs=1.0)
    shifted = m.copy()
    shifted[:, EXP_SLICE] += 0.3  # a constant smile
    shifted[:, HEAD_SLICE] += 0.1
    shifted[:, JAW_SLICE] -= 0.05
    np.testing.assert_allclose(acc.sequence_features(shifted), f, atol=1e-9)
    # mimicry: own head follows the partner's 10 frames later -> cross-correlation ~1
    partner = np.zeros_like(m)
    partner[:, HEAD_SLICE] = np.random.default_rng(0).normal(size=(T, 3)).cumsum(0) * 0.01
    follower = m.copy()
    follower[10:, HEAD_SLICE] = partner[:-10, HEAD_SLICE]
    g = acc.sequence_features(follower, partner)
    assert g.shape == (15,) and g[13] > 0.95 and g[14] > 0.95
    assert acc.sequence_features(m, partner)[13] < 0.5
    with pytest.raises(MetricError):
        acc.sequence_features(m, partner[:-1])


def test_logistic_cv_separable_vs_random_labels():
    rng = np.random.default_rng(0)
    n_groups, K = 12, 4
    groups = np.repeat(np.arange(n_groups), K * 2)
    y = np.tile(np.arange(K), n_groups * 2)
    speaker = np.tile(np.repeat([1, 2], K), n_groups)
    X = rng.normal(size=(len(y), 5))
    X[:, 0] += 3.0 * y  # class signal in one feature
    X[:, 1] += 3.0 * (y % 2)
    assert acc.logistic_cv(X, y, groups, speaker) > 0.9
    noise = rng.normal(size=(len(y), 5))
    assert acc.logistic_cv(noise, y, groups, speaker) < 0.45
    with pytest.raises(MetricError):
        acc.logistic_cv(X, y, np.zeros(len(y)), speaker)  # one group cannot make 6 folds


def test_checks_to_markdown_marks_failures():
    rows = [acc.Check("a", "thing", ">= 1", "2", True, {}), acc.Check("b", "other", "<= 1", "2", False, {})]
    md = acc.checks_to_markdown(rows)
    assert "| thing | >= 1 | 2 | yes |" in md and "| other | <= 1 | 2 | **no** |" in md


@pytest.mark.parametrize("with_partner", [False, True])
def test_batched_live_path_equals_the_streaming_generator(small_cfg, with_partner):
    from rsatalker_core.model.motion_model import MotionModel

    model = MotionModel(small_cfg)
    sr = small_cfg.speech.sample_rate
    rng = np.random.default_rng(0)
    n_frames = 40
    wav = (0.1 * rng.standard_normal(n_frames * sr // FPS)).astype(np.float32)
    other = (0.1 * rng.standard_normal(n_frames * sr // FPS)).astype(np.float32)
    pm = (0.05 * rng.standard_normal((n_frames, 56))).astype(np.float32) if with_partner else None
    from rsatalker_core.model.streaming import generate_offline

    # reference: the streaming generator stepped frame by frame, as the motion node runs it
    live = generate_offline(model, wav, other, sr, "couple", pm, n_frames, batched=False)
    np.testing.assert_allclose(acc.generate_live(model, wav, other, sr, n_frames, "couple", pm), live, atol=1e-4)
    assert live.shape == (n_frames, 56) and np.isfinite(live).all()
    w, la = small_cfg.streaming.window_frames, small_cfg.streaming.lookahead_frames
    fs = acc.sliding_window_features(model, wav, sr, n_frames, w, la)
    fp = acc.sliding_window_features(model, other, sr, n_frames, w, la)
    batched = acc.generate_live_batched(model, wav, fs, fp, sr, n_frames, "couple", pm)
    np.testing.assert_allclose(batched, live, atol=1e-4)
    other_rel = acc.generate_live_batched(model, wav, fs, fp, sr, n_frames, "superior_subordinate", pm)
    assert np.abs(other_rel - live).max() > 1e-4  # the relationship reaches the output
    whole = acc.generate_offline_windows(model, wav, other, sr, n_frames, "couple")
    assert whole.shape == (n_frames, 56)


def test_script_exits_cleanly_without_the_sample(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "accept_motion.py"), "--data", str(tmp_path),
                           "--results", str(tmp_path / "res"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "res.md").exists() and not (tmp_path / "out").exists()
